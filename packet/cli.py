"""Admin commands: ``flask --app app accounts|keys|endpoints|usage|demo …``.

Amounts are dollars on the command line (``25``, ``0.50``); a negative credit goes after
``--`` (``accounts credit acme -- -5``). ``keys create`` prints the new key alone on the last
line of stdout so scripts can capture it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import click
from flask import Flask
from flask.cli import AppGroup, with_appcontext

from . import store
from .key_controls import PERIODS, ControlError, check_tier_bounds, read_controls
from .limits import tier_figures
from .models import ApiKey
from .money import NotAnAmount, dollars_to_micros
from .reports import account_usage, account_view, dollars, key_view, parse_time
from .runtime import runtime
from .upstream.client import validate_base_url
from .upstream.errors import Blocked

T = TypeVar("T")

accounts = AppGroup("accounts", help="Create, credit and list accounts.")
keys_cli = AppGroup("keys", help="Create, revoke and list API keys.")
endpoints = AppGroup("endpoints", help="Add, list and remove inference endpoints.")


def _store(operation: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a store operation; its StoreError becomes a clean CLI error (exit 1, no traceback)."""
    try:
        return operation(*args, **kwargs)
    except store.StoreError as exc:
        raise click.ClickException(str(exc)) from None


def _amount(value: str) -> int:
    try:
        return dollars_to_micros(value)
    except NotAnAmount as exc:
        raise click.BadParameter(str(exc)) from None


def _tier(value: str) -> str:
    try:
        return runtime().settings.check_tier(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@accounts.command("create")
@click.argument("name")
@click.option("--tier", default=None, help="A configured tier (default: PACKET_DEFAULT_TIER).")
@click.option("--balance", default="0", help="Starting balance in dollars.")
@click.option("--default-model", default=None, help="Model used for 'auto' when several run.")
def accounts_create(name: str, tier: str | None, balance: str, default_model: str | None) -> None:
    """Create account NAME."""
    tier = _tier(tier or runtime().settings.default_tier)
    account = _store(store.create_account, name, tier, _amount(balance), default_model, actor="cli")
    click.echo(
        f"created account {account.name} (tier {account.tier}, balance ${dollars(account.balance_micros)})"
    )


@accounts.command("credit", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("amount")
@click.option("--reason", default="credit", help="Shown in the account's billing history.")
def accounts_credit(name: str, amount: str, reason: str) -> None:
    """Add AMOUNT dollars to NAME's balance (negative removes)."""
    account = _store(store.credit_account, name, _amount(amount), reason, actor="cli")
    runtime().keys.invalidate()
    click.echo(f"{account.name}: balance ${dollars(account.balance_micros)}")


@accounts.command("set-tier")
@click.argument("name")
@click.argument("tier")
def accounts_set_tier(name: str, tier: str) -> None:
    """Move NAME to TIER."""
    account = _store(store.update_account, name, tier=_tier(tier))
    runtime().keys.invalidate()
    click.echo(f"{account.name}: tier {account.tier}")


@accounts.command("set-default-model")
@click.argument("name")
@click.argument("model", required=False)
def accounts_set_default_model(name: str, model: str | None) -> None:
    """Use MODEL for NAME's "auto" requests (no MODEL: clear it)."""
    account = _store(store.update_account, name, default_model=model, clear_default_model=not model)
    runtime().keys.invalidate()
    click.echo(f"{account.name}: default model {account.default_model or '-'}")


@accounts.command("set-cache")
@click.argument("name")
@click.argument("state", type=click.Choice(["on", "off"]))
def accounts_set_cache(name: str, state: str) -> None:
    """Use the response cache for NAME's requests unless they say otherwise (on), or only
    when they ask with X-Packet-Cache (off)."""
    account = _store(store.update_account, name, cache_default=state == "on")
    runtime().keys.invalidate()
    click.echo(f"{account.name}: response cache {'on' if account.cache_default else 'off'}")


@accounts.command("show")
@click.argument("name")
def accounts_show(name: str) -> None:
    """NAME's tier, balance and default model, as JSON (the admin API's account object)."""
    account = _store(store.get_account, name)
    click.echo(json.dumps(account_view(account), indent=2))


@accounts.command("list")
def accounts_list() -> None:
    """One line per account."""
    for a in store.list_accounts():
        click.echo(
            f"{a.name}\ttier={a.tier}\tbalance=${dollars(a.balance_micros)}"
            f"\tdefault_model={a.default_model or '-'}"
        )


def _key_options(command: Callable[..., None]) -> Callable[..., None]:
    """The controls ``keys create`` and ``keys update`` take ("none" clears one on update)."""
    options = (
        click.option("--label", default=None, help="A note to recognise the key by."),
        click.option("--rpm", default=None, help="Requests per minute (at most the tier's)."),
        click.option("--tpm", default=None, help="Tokens per minute (at most the tier's)."),
        click.option("--budget", default=None, help="Spend cap in dollars."),
        click.option(
            "--budget-period",
            type=click.Choice(PERIODS),
            default=None,
            help="The budget is per calendar month (UTC, the default) or in total.",
        ),
        click.option("--models", default=None, help="Allowed model ids, comma-separated."),
        click.option(
            "--expires", default=None, help="Expiry: a date (valid through that day, UTC) or time."
        ),
    )
    for option in reversed(options):
        command = option(command)
    return command


def _key_changes(given: dict[str, str | None]) -> dict[str, Any]:
    """The options given, parsed; the word "none" clears a control."""
    try:
        return read_controls(given, clear="none")
    except ControlError as exc:
        raise click.BadParameter(
            exc.message, param_hint=f"--{exc.name.replace('_', '-')}"
        ) from None


def _within_tier(tier: str, changes: dict[str, Any]) -> None:
    try:
        check_tier_bounds(tier_figures(runtime().settings, tier), changes)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@keys_cli.command("create")
@click.argument("name")
@_key_options
def keys_create(name: str, **given: str | None) -> None:
    """Create a key for NAME; the key is printed once, alone on the last line."""
    changes = _key_changes(given)
    _within_tier(_store(store.get_account, name).tier, changes)
    label = changes.pop("label", None)
    row, key = _store(store.create_key, name, label, changes)
    click.echo(
        f"created key {row.prefix}… for {name}; store it now, it is not shown again:", err=True
    )
    click.echo(key)


@keys_cli.command("update")
@click.argument("key_or_prefix")
@_key_options
def keys_update(key_or_prefix: str, **given: str | None) -> None:
    """Change a key's label or controls (by the full key or its display prefix)."""
    changes = _key_changes(given)
    if not changes:
        raise click.UsageError("Give at least one option to change.")
    key = _store(store.find_live_key, key_or_prefix)
    _within_tier(key.account.tier, changes)
    _store(store.set_controls, key, changes)
    runtime().keys.invalidate()
    click.echo(_key_line(key))


@keys_cli.command("revoke")
@click.argument("key_or_prefix")
def keys_revoke(key_or_prefix: str) -> None:
    """Revoke a key by the full key or its display prefix."""
    row = _store(store.revoke_key, key_or_prefix)
    runtime().keys.invalidate()
    click.echo(f"revoked {row.prefix}…")


@keys_cli.command("list")
@click.argument("name")
def keys_list(name: str) -> None:
    """NAME's keys: prefix, label, created, last used, revoked, controls, spend this period."""
    for k in _store(store.list_keys, name):
        click.echo(_key_line(k))


def _key_line(key: ApiKey) -> str:
    view = key_view(key)
    budget = f"${view['budget']}/{view['budget_period']}" if view["budget"] is not None else "-"
    return (
        f"{key.prefix}…\tlabel={key.label or '-'}\tcreated={_iso(key.created_at)}"
        f"\tlast_used={_iso(key.last_used_at)}\trevoked={_iso(key.revoked_at)}"
        f"\trpm={view['rpm'] or '-'}\ttpm={view['tpm'] or '-'}\tbudget={budget}"
        f"\tspent=${view['spent']}\tmodels={','.join(view['models'] or ()) or '-'}"
        f"\texpires={view['expires_at'] or '-'}"
    )


@endpoints.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--upstream-key", default=None, help="API key vLLM was started with (--api-key).")
def endpoints_add(name: str, url: str, upstream_key: str | None) -> None:
    """Add inference endpoint URL (vLLM's base URL, e.g. http://10.0.0.5:8000) to NAME."""
    try:
        base_url = validate_base_url(url)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="URL") from None
    try:
        resolved = runtime().client.policy.check_url(base_url)
    except Blocked as exc:
        raise click.ClickException(f"endpoint URL refused by the gateway's policy: {exc}") from None
    if not resolved:
        click.echo(
            f"warning: {base_url} does not resolve now; each new connection will be checked",
            err=True,
        )
    endpoint = _store(store.add_endpoint, name, base_url, upstream_key)
    runtime().keys.invalidate()
    click.echo(f"added endpoint {endpoint.id}: {endpoint.base_url}")


@endpoints.command("list")
@click.argument("name")
def endpoints_list(name: str) -> None:
    """NAME's endpoints."""
    rows = _store(store.list_endpoints, name)
    for e in rows:
        click.echo(f"{e.id}\t{e.base_url}\tupstream_key={'set' if e.upstream_key else '-'}")


@endpoints.command("remove")
@click.argument("name")
@click.argument("endpoint_id", type=int)
def endpoints_remove(name: str, endpoint_id: int) -> None:
    """Remove endpoint ENDPOINT_ID from NAME."""
    _store(store.remove_endpoint, name, endpoint_id)
    runtime().keys.invalidate()
    click.echo(f"removed endpoint {endpoint_id}")


@click.command("usage")
@with_appcontext
@click.argument("name")
@click.option("--since", default=None, help="ISO date or time, e.g. 2026-11-01 (UTC if no zone).")
@click.option("--until", default=None, help="ISO date or time, exclusive.")
@click.option("--model", default=None, help="Only this model.")
@click.option("--json", "as_json", is_flag=True, help="The admin API's usage report, as JSON.")
def usage(
    name: str, since: str | None, until: str | None, model: str | None, as_json: bool
) -> None:
    """NAME's usage: totals, and per model and per key."""
    try:
        window = {"since": parse_time(since), "until": parse_time(until)}
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    report = _store(account_usage, name, model=model, **window)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    t = report["total"]
    click.echo(
        f"{name}: {t['requests']} requests, {t['prompt_tokens']} prompt + "
        f"{t['completion_tokens']} completion tokens, ${t['cost']}"
    )
    if t["cache_hits"]:
        click.echo(f"  cache: {t['cache_hits']} hits, {t['saved_tokens']} tokens saved")
    for row in report["by_model"]:
        click.echo(
            f"  model={row['model']}\trequests={row['requests']}"
            f"\ttokens={row['total_tokens']}\tcost=${row['cost']}"
        )
    for row in report["by_key"]:
        click.echo(
            f"  key={row['key_prefix'] or '-'}…\tid={row['key_id']}\trequests={row['requests']}"
            f"\ttokens={row['total_tokens']}\tcost=${row['cost']}"
        )


@click.command("demo")
@with_appcontext
def demo() -> None:
    """Create the demo account (first time) and print a fresh key for it (used by `make run`)."""
    try:
        store.get_account("demo")
    except store.StoreError:
        store.create_account("demo", runtime().settings.default_tier, _amount("25"), actor="cli")
    _, key = store.create_key("demo", "make run")
    click.echo(key)


def _iso(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "-"


def register(app: Flask) -> None:
    """Attach every command group to the app's ``flask`` CLI."""
    from .batch.commands import batches_cli, worker
    from .dashboard.commands import users_cli
    from .doctor import doctor

    for command in (accounts, keys_cli, endpoints, usage, demo, users_cli, batches_cli, worker):
        app.cli.add_command(command)
    app.cli.add_command(doctor)
