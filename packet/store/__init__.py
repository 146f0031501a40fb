"""The persistence layer: every SQL statement the gateway runs lives in this package, one module
per aggregate. Balance changes are single atomic ``UPDATE … SET balance = balance ± n``
statements, so concurrent workers and instances never lose an update.
"""

from ._db import ConflictError, NotFoundError, StoreError, is_outage, ping
from .accounts import (
    create_account,
    credit_account,
    get_account,
    list_accounts,
    update_account,
)
from .batch import Batch, write_usage
from .daily import DailyRow, GroupRow, KeyDayRow, daily_usage, daily_usage_by_key, today, usage_by
from .endpoints import (
    EndpointRow,
    account_endpoints,
    add_endpoint,
    list_endpoints,
    remove_endpoint,
)
from .journal import Recovered, drop_worker, journal_workers, lease_balance, recover_worker
from .keys import (
    KeyRow,
    create_key,
    find_active_key,
    find_live_key,
    get_key,
    list_keys,
    revoke_key,
    revoke_key_id,
    set_controls,
)
from .ledger import balance_events
from .responses import remember_response, response_owner
from .usage import Settlement, UsageRow, fit_usage, usage_records, usage_rows
from .users import (
    add_sign_in_token,
    create_user,
    find_user,
    get_user,
    list_users,
    note_sign_in,
    peek_sign_in_token,
    set_disabled,
    set_password,
    use_sign_in_token,
    user_by_id,
)

__all__ = [
    "Batch",
    "ConflictError",
    "DailyRow",
    "EndpointRow",
    "GroupRow",
    "KeyDayRow",
    "KeyRow",
    "NotFoundError",
    "Recovered",
    "Settlement",
    "StoreError",
    "UsageRow",
    "account_endpoints",
    "add_endpoint",
    "add_sign_in_token",
    "balance_events",
    "create_account",
    "create_key",
    "create_user",
    "credit_account",
    "daily_usage",
    "daily_usage_by_key",
    "drop_worker",
    "find_active_key",
    "find_live_key",
    "find_user",
    "fit_usage",
    "get_account",
    "get_key",
    "get_user",
    "is_outage",
    "journal_workers",
    "lease_balance",
    "list_accounts",
    "list_endpoints",
    "list_keys",
    "list_users",
    "note_sign_in",
    "peek_sign_in_token",
    "ping",
    "recover_worker",
    "remember_response",
    "remove_endpoint",
    "response_owner",
    "revoke_key",
    "revoke_key_id",
    "set_controls",
    "set_disabled",
    "set_password",
    "today",
    "update_account",
    "usage_by",
    "usage_records",
    "usage_rows",
    "use_sign_in_token",
    "user_by_id",
    "write_usage",
]
