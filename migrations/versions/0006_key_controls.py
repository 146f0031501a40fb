"""Per-key controls: rpm, tpm, a spend budget, allowed models, an expiry; the key's spend.

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa


revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("rpm", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("tpm", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("budget_micros", sa.BigInteger(), nullable=True))
        batch.add_column(
            sa.Column("budget_period", sa.String(length=10), nullable=False, server_default="month")
        )
        batch.add_column(sa.Column("models", sa.Text(), nullable=True))
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("spent_micros", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("spent_period", sa.String(length=10), nullable=True))


def downgrade():
    with op.batch_alter_table("api_keys") as batch:
        for column in (
            "spent_period",
            "spent_micros",
            "expires_at",
            "models",
            "budget_period",
            "budget_micros",
            "tpm",
            "rpm",
        ):
            batch.drop_column(column)
