"""What ``flask doctor`` asks the database: its schema revision, its clock, every endpoint."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select

from ..extensions import db
from ..models import Endpoint
from .endpoints import EndpointRow


def schema_revisions() -> tuple[set[str], set[str]]:
    """The database's Alembic revision(s) and the migrations' head(s)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from flask import current_app

    config = current_app.extensions["migrate"].migrate.get_config()
    heads = set(ScriptDirectory.from_config(config).get_heads())
    with db.engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    return current, heads


def database_clock() -> datetime:
    """The database server's current time, as an aware UTC datetime."""
    value = db.session.execute(select(func.current_timestamp())).scalar_one()
    db.session.rollback()
    if isinstance(value, str):  # SQLite answers text, in UTC
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def every_endpoint() -> list[EndpointRow]:
    """Every account's endpoints, oldest first."""
    rows = db.session.execute(
        select(Endpoint.id, Endpoint.base_url, Endpoint.upstream_key).order_by(Endpoint.id)
    ).all()
    db.session.rollback()
    return [EndpointRow(*row) for row in rows]
