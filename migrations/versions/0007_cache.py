"""The response cache: an account's default, and usage rows answered from the cache with the
tokens they saved (summed in the daily roll-up too: no row is cached before this revision).

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa


revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("cache_default", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("cached", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("saved_tokens", sa.Integer(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("usage_daily", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("cache_hits", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("saved_tokens", sa.BigInteger(), nullable=False, server_default="0")
        )


def downgrade():
    with op.batch_alter_table("usage_daily", schema=None) as batch_op:
        batch_op.drop_column("saved_tokens")
        batch_op.drop_column("cache_hits")
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.drop_column("saved_tokens")
        batch_op.drop_column("cached")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("cache_default")
