"""Usage rows say where their token counts came from: the upstream's report or the gateway's
own count (when the report was missing or implausible).

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("usage_source", sa.String(length=16), nullable=False, server_default="upstream")
        )


def downgrade():
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.drop_column("usage_source")
