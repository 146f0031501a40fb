"""Tables: accounts, their API keys and inference endpoints, and usage records.

Money is integer micro-dollars everywhere (``*_micros``); no floats touch a balance.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .extensions import db

if TYPE_CHECKING:
    from flask_sqlalchemy.model import Model as _FSAModel
    from sqlalchemy import Table

    from .extensions import Base

    # mypy cannot take an attribute (``db.Model``) as a base class. At run time ``db.Model``
    # is built from Base (its metadata and registry) plus Flask-SQLAlchemy's Model mixin.
    # Every table here is declared with __tablename__, so its __table__ is a Table.
    class Model(Base, _FSAModel):
        __abstract__ = True
        __table__: ClassVar[Table]

else:
    Model = db.Model


def utcnow() -> datetime:
    """Timezone-aware now, the only clock the tables use."""
    return datetime.now(UTC)


class Account(Model):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    tier: Mapped[str] = mapped_column(String(50))
    balance_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    default_model: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # The response cache is used for requests that do not choose (see packet.gateway.cache).
    cache_default: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    keys: Mapped[list[ApiKey]] = relationship(back_populates="account")
    endpoints: Mapped[list[Endpoint]] = relationship(back_populates="account")


class ApiKey(Model):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(20))
    label: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Its own controls (see packet.key_controls), all optional: None means the account's.
    rpm: Mapped[int | None] = mapped_column(Integer)
    tpm: Mapped[int | None] = mapped_column(Integer)
    budget_micros: Mapped[int | None] = mapped_column(BigInteger)
    budget_period: Mapped[str] = mapped_column(String(10), default="month")
    models: Mapped[str | None] = mapped_column(Text)  # allowed model ids, one per line
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # What the key spent in ``spent_period`` ("2026-12", or "total"), written with usage rows.
    spent_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    spent_period: Mapped[str | None] = mapped_column(String(10))

    account: Mapped[Account] = relationship(back_populates="keys")


class Endpoint(Model):
    __tablename__ = "endpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    base_url: Mapped[str] = mapped_column(String(500))
    upstream_key: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    account: Mapped[Account] = relationship(back_populates="endpoints")


class UsageRecord(Model):
    """One row per proxied request; small fixed-width columns only, no bodies."""

    __tablename__ = "usage_records"
    __table_args__ = (
        Index("ix_usage_account_created", "account_id", "created_at"),
        # Only batch lines' rows: the index costs real-time rows nothing.
        Index(
            "ix_usage_batch",
            "batch_id",
            postgresql_where=text("batch_id IS NOT NULL"),
            sqlite_where=text("batch_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    endpoint_url: Mapped[str | None] = mapped_column(String(500))
    model: Mapped[str | None] = mapped_column(String(200))
    route: Mapped[str] = mapped_column(String(50))
    stream: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[int] = mapped_column(Integer)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    total_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    ttft_ms: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    client_disconnected: Mapped[bool] = mapped_column(Boolean, default=False)
    # "upstream": the endpoint's own report; "counted": the gateway's count (see packet.usage).
    usage_source: Mapped[str] = mapped_column(String(16), default="upstream")
    # Answered from the response cache: no tokens charged; ``saved_tokens`` is what it saved.
    cached: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    saved_tokens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    batch_id: Mapped[str | None] = mapped_column(String(40))  # a batch line's usage
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class StoredResponse(Model):
    """A response stored by an endpoint (Responses API): who owns it and where it lives."""

    __tablename__ = "stored_responses"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    endpoint_url: Mapped[str] = mapped_column(String(500))
    model: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class MeterWorker(Model):
    """A gateway worker's journal (see packet.journal): who it is, when it last wrote, and a
    checkpoint of its long calls (JSON), so a live worker can settle for it if it dies."""

    __tablename__ = "meter_workers"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    host: Mapped[str] = mapped_column(String(200))
    master_pid: Mapped[int] = mapped_column(Integer)
    pid: Mapped[int] = mapped_column(Integer)
    written_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    calls: Mapped[str] = mapped_column(Text, default="[]")


class WorkerLease(Model):
    """Balance a worker has leased and not yet given back or billed, per account."""

    __tablename__ = "worker_leases"

    worker_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    amount_micros: Mapped[int] = mapped_column(BigInteger, default=0)


class User(Model):
    """A person of an account who signs in to the dashboard (``owner`` or ``member``).

    ``session_stamp`` is part of every session's id: bumping it (new password, disabled) ends
    the user's sessions everywhere.
    """

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(16), default="member")
    session_stamp: Mapped[int] = mapped_column(Integer, default=0)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    account: Mapped[Account] = relationship()


class SignInToken(Model):
    """A one-time sign-in link (invite or reset): only the SHA-256 digest of its token."""

    __tablename__ = "sign_in_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class UsageDaily(Model):
    """Usage per account, UTC day, model and key, kept by the usage flush (the dashboard's
    source, so its pages do not scan usage_records). No model is ``''``, no key is ``0``."""

    __tablename__ = "usage_daily"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    key_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    total_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    cache_hits: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    saved_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class BalanceEvent(Model):
    """One credit or debit of an account's balance by an operator (CLI, admin API)."""

    __tablename__ = "balance_events"
    __table_args__ = (Index("ix_balance_events_account_id_id", "account_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    amount_micros: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(200))
    actor: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class StoredFile(Model):
    """A file uploaded with the Files API (or a batch's output): its object fields; the bytes
    are in :class:`FileChunk` rows or the bucket (``storage``)."""

    __tablename__ = "files"
    __table_args__ = (Index("ix_files_account_created", "account_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    filename: Mapped[str] = mapped_column(String(255))
    purpose: Mapped[str] = mapped_column(String(32))
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    storage: Mapped[str] = mapped_column(String(16), default="db")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class FileChunk(Model):
    """One piece (up to 1 MiB) of a file kept in the database."""

    __tablename__ = "file_chunks"

    file_id: Mapped[str] = mapped_column(
        ForeignKey("files.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class BatchJob(Model):
    """A batch (OpenAI's batch object); ``owner``/``lease_until``: the worker validating or
    finalizing it."""

    __tablename__ = "batches"
    __table_args__ = (Index("ix_batches_account_created", "account_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    endpoint: Mapped[str] = mapped_column(String(64))
    input_file_id: Mapped[str] = mapped_column(String(40))
    completion_window: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), index=True)
    metadata_json: Mapped[str | None] = mapped_column(Text)
    errors_json: Mapped[str | None] = mapped_column(Text)
    output_file_id: Mapped[str | None] = mapped_column(String(40))
    error_file_id: Mapped[str | None] = mapped_column(String(40))
    total: Mapped[int] = mapped_column(Integer, default=0)
    owner: Mapped[str | None] = mapped_column(String(255))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    in_progress_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finalizing_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    failed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancelling_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class BatchLine(Model):
    """One request of a batch: pending → running (claimed by ``owner`` until ``lease_until``)
    → done (``status`` 200) or error; ``result`` is its output or error line (JSON)."""

    __tablename__ = "batch_lines"
    __table_args__ = (Index("ix_batch_lines_state", "batch_id", "state"),)

    batch_id: Mapped[str] = mapped_column(
        ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True
    )
    line: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    custom_id: Mapped[str] = mapped_column(String(512))
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    owner: Mapped[str | None] = mapped_column(String(255))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[str | None] = mapped_column(Text)
