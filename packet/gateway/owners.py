"""Which account owns each stored response, and which endpoint holds it.

vLLM keeps a stored response on the replica that made it, so a follow-up must go there; and a
response id is a capability only for the account that made it. The owner is written to the
database as soon as the id is known (a follow-up may reach another worker at once) and kept in
a bounded per-worker cache, so follow-ups usually cost no database read.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

from flask import Flask

from .. import store
from ..errors import NotFound

_CACHED = 10_000


class Owner(NamedTuple):
    account_id: int
    endpoint_url: str
    model: str


class Owners:
    """remember() when a response is made; find() when one is named."""

    def __init__(self, app: Flask, cached: int = _CACHED) -> None:
        self.app = app
        self.cached = cached
        self._cache: OrderedDict[str, Owner] = OrderedDict()

    def remember(self, response_id: str, account_id: int, endpoint_url: str, model: str) -> None:
        owner = Owner(account_id, endpoint_url, model)
        with self.app.app_context():
            store.remember_response(response_id, *owner)
        self._keep(response_id, owner)

    def find(self, response_id: str, account_id: int) -> Owner:
        """The response's owner, when it is ``account_id``; 404 for any other (unknown and
        another account's look the same, so ids cannot be probed)."""
        owner = self._cache.get(response_id)
        if owner is None:
            with self.app.app_context():
                row = store.response_owner(response_id)
            if row is not None:
                owner = Owner(*row)
                self._keep(response_id, owner)
        if owner is None or owner.account_id != account_id:
            raise NotFound(f"No response found with id '{response_id[:100]}'.", param="response_id")
        return owner

    def _keep(self, response_id: str, owner: Owner) -> None:
        self._cache[response_id] = owner
        self._cache.move_to_end(response_id)
        while len(self._cache) > self.cached:
            self._cache.popitem(last=False)
