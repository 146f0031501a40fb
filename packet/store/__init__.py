"""The persistence layer: every SQL statement the gateway runs lives in this package, one module
per aggregate. Balance changes are single atomic ``UPDATE … SET balance = balance ± n``
statements, so concurrent workers and instances never lose an update.
"""

from ._db import ConflictError, NotFoundError, StoreError, is_outage, ping
from .accounts import (
    create_account,
    credit_account,
    get_account,
    lease_balance,
    list_accounts,
    reserve_balance,
    update_account,
)
from .endpoints import (
    EndpointRow,
    account_endpoints,
    add_endpoint,
    list_endpoints,
    remove_endpoint,
)
from .keys import (
    KeyRow,
    create_key,
    find_active_key,
    get_key,
    list_keys,
    revoke_key,
    revoke_key_id,
)
from .usage import Settlement, UsageRow, fit_usage, usage_records, usage_rows, write_usage

__all__ = [
    "ConflictError",
    "EndpointRow",
    "KeyRow",
    "NotFoundError",
    "Settlement",
    "StoreError",
    "UsageRow",
    "account_endpoints",
    "add_endpoint",
    "create_account",
    "create_key",
    "credit_account",
    "find_active_key",
    "fit_usage",
    "get_account",
    "get_key",
    "is_outage",
    "lease_balance",
    "list_accounts",
    "list_endpoints",
    "list_keys",
    "ping",
    "remove_endpoint",
    "reserve_balance",
    "revoke_key",
    "revoke_key_id",
    "update_account",
    "usage_records",
    "usage_rows",
    "write_usage",
]
