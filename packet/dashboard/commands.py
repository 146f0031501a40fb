"""``flask --app app users invite|reset|disable|enable|list``: the dashboard's people.

``invite`` and ``reset`` print the one-time sign-in link alone on the last line of stdout
(valid 24 hours, single use), absolute when ``PACKET_PUBLIC_URL`` is set.
"""

from __future__ import annotations

import click
from flask.cli import AppGroup

from .. import store
from ..runtime import runtime
from ..users import LINK_TTL, ROLES, UserError, invite, link, reset, set_disabled

users_cli = AppGroup("users", help="Invite dashboard users, reset their passwords.")


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


def _print_link(email: str, token: str, what: str) -> None:
    hours = int(LINK_TTL.total_seconds() // 3600)
    click.echo(f"{what} for {email}: one-time sign-in link, valid {hours} h:", err=True)
    click.echo(link(token, runtime().settings.public_url))


@users_cli.command("invite")
@click.argument("email")
@click.option("--account", "account_name", required=True, help="The account the user joins.")
@click.option("--role", type=click.Choice(ROLES), default="member", show_default=True)
def users_invite(email: str, account_name: str, role: str) -> None:
    """Invite EMAIL to ACCOUNT's dashboard; prints the sign-in link on the last line."""
    try:
        user, token = invite(email, account_name, role)
    except (UserError, store.StoreError) as exc:
        raise _fail(exc) from None
    _print_link(user.email, token, f"invited ({role} of {account_name})")


@users_cli.command("reset")
@click.argument("email")
def users_reset(email: str) -> None:
    """A new sign-in link for EMAIL (to set a new password); earlier links stop working."""
    try:
        user, token = reset(email)
    except store.StoreError as exc:
        raise _fail(exc) from None
    _print_link(user.email, token, "reset")


@users_cli.command("disable")
@click.argument("email")
def users_disable(email: str) -> None:
    """Disable EMAIL: their sessions end at once, sign-in is refused."""
    try:
        set_disabled(email, True)
    except store.StoreError as exc:
        raise _fail(exc) from None
    click.echo(f"disabled {email}")


@users_cli.command("enable")
@click.argument("email")
def users_enable(email: str) -> None:
    """Enable EMAIL again (they sign in anew)."""
    try:
        set_disabled(email, False)
    except store.StoreError as exc:
        raise _fail(exc) from None
    click.echo(f"enabled {email}")


@users_cli.command("list")
@click.argument("account_name")
def users_list(account_name: str) -> None:
    """ACCOUNT's users: email, role, password set, last sign-in, disabled."""
    try:
        rows = store.list_users(account_name)
    except store.StoreError as exc:
        raise _fail(exc) from None
    for u in rows:
        last = u.last_sign_in_at.isoformat(timespec="seconds") if u.last_sign_in_at else "-"
        click.echo(
            f"{u.email}\trole={u.role}\tpassword={'set' if u.password_hash else '-'}"
            f"\tlast_sign_in={last}\tdisabled={'yes' if u.disabled else 'no'}"
        )
