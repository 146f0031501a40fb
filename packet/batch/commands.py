"""``flask --app app batches list|show|cancel`` and ``flask --app app worker`` (the batch worker
process, which the Procfile's ``worker:`` runs)."""

from __future__ import annotations

import json
from datetime import datetime

import click
from flask.cli import AppGroup

from .. import store
from ..models import Account
from ..reports import dollars


def _iso(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "-"


def _account(name: str) -> Account:
    try:
        return store.get_account(name)
    except store.StoreError as exc:
        raise click.ClickException(str(exc)) from None


batches_cli = AppGroup("batches", help="List, show and cancel batches.")


@batches_cli.command("list")
@click.argument("name")
def batches_list(name: str) -> None:
    """The account's batches, newest first."""
    from . import service

    account = _account(name)
    for batch in store.list_batches(account.id, None, 100):
        view = service.view(batch)
        counts = view["request_counts"]
        click.echo(
            f"{batch.id}\t{batch.status}\t{batch.endpoint}\t{counts['completed']}/"
            f"{counts['total']} done\t{counts['failed']} failed\t{_iso(batch.created_at)}"
        )


@batches_cli.command("show")
@click.argument("batch_id")
def batches_show(batch_id: str) -> None:
    """The batch object, with what its lines have cost so far."""
    from ..errors import NotFound
    from . import service

    try:
        view = service.view(service.find(None, batch_id))
    except NotFound as exc:
        raise click.ClickException(exc.message) from None
    rows, prompt, completion, cost = store.batch_usage(batch_id)
    view["usage_rows"], view["cost"] = rows, dollars(cost)
    view["prompt_tokens"], view["completion_tokens"] = prompt, completion
    click.echo(json.dumps(view, indent=2))


@batches_cli.command("cancel")
@click.argument("batch_id")
def batches_cancel(batch_id: str) -> None:
    """Stop the batch: no new line starts; in-flight ones finish."""
    from ..errors import NotFound
    from . import service

    try:
        batch = service.cancel(None, batch_id)
    except NotFound as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"{batch.id}\t{batch.status}")


@click.command("worker")
def worker() -> None:
    """Run a batch worker in the foreground (gevent-patched first: it runs worker.py)."""
    import os
    import sys
    from pathlib import Path

    entry = Path(__file__).resolve().parents[2] / "worker.py"
    os.execv(sys.executable, [sys.executable, str(entry)])
