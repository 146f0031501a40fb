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
from .responses import remember_response, response_owner
from .usage import Settlement, UsageRow, fit_usage, usage_records, usage_rows

__all__ = [
    "Batch",
    "ConflictError",
    "EndpointRow",
    "KeyRow",
    "NotFoundError",
    "Recovered",
    "Settlement",
    "StoreError",
    "UsageRow",
    "account_endpoints",
    "add_endpoint",
    "create_account",
    "create_key",
    "credit_account",
    "drop_worker",
    "find_active_key",
    "find_live_key",
    "fit_usage",
    "get_account",
    "get_key",
    "is_outage",
    "journal_workers",
    "lease_balance",
    "list_accounts",
    "list_endpoints",
    "list_keys",
    "ping",
    "recover_worker",
    "remember_response",
    "remove_endpoint",
    "response_owner",
    "revoke_key",
    "revoke_key_id",
    "set_controls",
    "update_account",
    "usage_records",
    "usage_rows",
    "write_usage",
]
