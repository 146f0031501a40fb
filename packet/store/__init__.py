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
from .batch_lines import claim_lines, drop_claim, record_line, renew, results
from .batches import (
    Claimed,
    account_row,
    active_batches,
    batch_usage,
    begin_finalizing,
    cancel_batch,
    claim_finishing,
    claim_validation,
    create_batch,
    expire_due,
    fail_batch,
    finish_batch,
    get_batch,
    line_states,
    list_batches,
    start_batch,
)
from .endpoints import (
    EndpointRow,
    account_endpoints,
    add_endpoint,
    list_endpoints,
    remove_endpoint,
)
from .files import create_file, delete_file, file_chunks, get_file, list_files
from .journal import Recovered, drop_worker, journal_workers, lease_balance, recover_worker
from .keys import (
    KeyRow,
    create_key,
    find_active_key,
    get_key,
    list_keys,
    revoke_key,
    revoke_key_id,
)
from .responses import remember_response, response_owner
from .usage import Settlement, UsageRow, fit_usage, usage_records, usage_rows

__all__ = [
    "Batch",
    "Claimed",
    "ConflictError",
    "EndpointRow",
    "KeyRow",
    "NotFoundError",
    "Recovered",
    "Settlement",
    "StoreError",
    "UsageRow",
    "account_endpoints",
    "account_row",
    "active_batches",
    "add_endpoint",
    "batch_usage",
    "begin_finalizing",
    "cancel_batch",
    "claim_finishing",
    "claim_lines",
    "claim_validation",
    "create_account",
    "create_batch",
    "create_file",
    "create_key",
    "credit_account",
    "delete_file",
    "drop_claim",
    "drop_worker",
    "expire_due",
    "fail_batch",
    "file_chunks",
    "find_active_key",
    "finish_batch",
    "fit_usage",
    "get_account",
    "get_batch",
    "get_file",
    "get_key",
    "is_outage",
    "journal_workers",
    "lease_balance",
    "line_states",
    "list_accounts",
    "list_batches",
    "list_endpoints",
    "list_files",
    "list_keys",
    "ping",
    "record_line",
    "recover_worker",
    "remember_response",
    "remove_endpoint",
    "renew",
    "response_owner",
    "results",
    "revoke_key",
    "revoke_key_id",
    "start_batch",
    "update_account",
    "usage_records",
    "usage_rows",
    "write_usage",
]
