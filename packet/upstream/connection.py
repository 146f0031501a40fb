"""urllib3 connections that ask the endpoint policy before they connect (DNS rebinding).

A name checked when the endpoint was added may resolve elsewhere later. So every new upstream
connection resolves the host itself, has :class:`~packet.upstream.policy.EndpointPolicy` check
every address, and connects to a checked address: the address is pinned, while the Host header,
TLS SNI and certificate verification still use the hostname (urllib3 takes those from
``self.host``, which is left alone). Only ``_new_conn`` changes, so a pooled keep-alive
connection costs nothing more; a refused one raises :class:`~packet.upstream.errors.Blocked`,
which urllib3 and requests let through untouched.
"""

from __future__ import annotations

import socket
import sys
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util import connection

from .policy import EndpointPolicy


class _Checked(HTTPConnection):
    """Mixin body for both schemes; ``policy`` is set on the per-adapter subclasses."""

    policy: EndpointPolicy

    def _new_conn(self) -> socket.socket:
        try:
            addresses = self.policy.addresses(self._dns_host, self.port)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        error: OSError | None = None
        for address in addresses:
            try:
                sock = connection.create_connection(
                    (address, self.port),
                    self.timeout,
                    source_address=self.source_address,
                    socket_options=self.socket_options,
                )
            except OSError as exc:
                error = exc
                continue
            sys.audit("http.client.connect", self, self.host, self.port)
            return sock
        if isinstance(error, TimeoutError):
            raise ConnectTimeoutError(
                self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})"
            ) from error
        raise NewConnectionError(self, f"Failed to establish a new connection: {error}") from error


class CheckedAdapter(HTTPAdapter):
    """requests' adapter whose pools make :class:`_Checked` connections for ``policy``."""

    def __init__(self, policy: EndpointPolicy, **kwargs: Any) -> None:
        self.policy = policy  # before super().__init__, which builds the pool manager
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        attrs = {"policy": self.policy}
        http = type("CheckedHTTPConnection", (_Checked,), attrs)
        https = type("CheckedHTTPSConnection", (_Checked, HTTPSConnection), attrs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": type("CheckedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http}),
            "https": type("CheckedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https}),
        }
