"""Dashboard: users and their sign-in links, the daily usage roll-up, the balance ledger.

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa


revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("session_stamp", sa.Integer(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_sign_in_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email"),
    )
    op.create_index("ix_users_account_id", "users", ["account_id"])
    op.create_table(
        "sign_in_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("digest"),
    )
    op.create_index("ix_sign_in_tokens_user_id", "sign_in_tokens", ["user_id"])
    op.create_table(
        "usage_daily",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("total_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_micros", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("account_id", "day", "model", "key_id"),
    )
    op.create_table(
        "balance_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("amount_micros", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("actor", sa.String(length=300), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_balance_events_account_id_id", "balance_events", ["account_id", "id"])
    # The usage already recorded, rolled up by UTC day (the flush keeps it up to date from here).
    day = (
        "date(created_at AT TIME ZONE 'UTC')"
        if op.get_bind().dialect.name == "postgresql"
        else "date(created_at)"
    )
    op.execute(
        "INSERT INTO usage_daily (account_id, day, model, key_id, requests, prompt_tokens, "
        "completion_tokens, total_tokens, cost_micros) "
        f"SELECT account_id, {day}, coalesce(model, ''), coalesce(key_id, 0), count(*), "
        "sum(prompt_tokens), sum(completion_tokens), sum(total_tokens), sum(cost_micros) "
        f"FROM usage_records GROUP BY account_id, {day}, coalesce(model, ''), coalesce(key_id, 0)"
    )


def downgrade():
    op.drop_index("ix_balance_events_account_id_id", table_name="balance_events")
    op.drop_table("balance_events")
    op.drop_table("usage_daily")
    op.drop_index("ix_sign_in_tokens_user_id", table_name="sign_in_tokens")
    op.drop_table("sign_in_tokens")
    op.drop_index("ix_users_account_id", table_name="users")
    op.drop_table("users")
