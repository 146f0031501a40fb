"""One pooled ``requests.Session`` per worker for every upstream call.

The read timeout is the longest silence accepted between two bytes: for an answer that is not
streamed, that is the whole generation; for a stream it is only a backstop, since the relay
bounds the time to the first event and the silences between events itself. The connect timeout
is short so failover is quick.

Completions are sent through the session's adapter with a request prepared here: the session
merges settings, cookies and hooks on every call, a large part of requests' own cost, and the
gateway needs none of it (no proxies from the environment, no redirects, and no cookie jar
shared between different users' endpoints).

Every new connection is checked against the endpoint policy (:mod:`packet.upstream.connection`);
a refused one raises :class:`~packet.upstream.errors.Blocked` from :meth:`UpstreamClient.send`
and :meth:`UpstreamClient.get` alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address
from typing import Any

import orjson
import requests
from requests.models import PreparedRequest
from urllib3.exceptions import ProtocolError

from .connection import CheckedAdapter
from .errors import BadGateway, ConnectFailed, Dropped, TimedOut
from .policy import EndpointPolicy, parse_address

_MAX_URLS = 10_000


class UpstreamClient:
    """Thin wrapper that turns requests' exceptions into :mod:`packet.upstream.errors`."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        read_timeout: float,
        pool_maxsize: int,
        stream_read_timeout: float | None = None,
        policy: EndpointPolicy | None = None,
    ) -> None:
        self.policy = policy or EndpointPolicy()
        self.timeout = (connect_timeout, read_timeout)
        self.stream_timeout = (connect_timeout, stream_read_timeout or read_timeout)
        self.session = requests.Session()
        self.session.trust_env = False
        self.adapter = CheckedAdapter(
            self.policy, pool_connections=64, pool_maxsize=pool_maxsize, max_retries=0
        )
        self.session.mount("http://", self.adapter)
        self.session.mount("https://", self.adapter)
        # requests' defaults (User-Agent, Accept, Connection), merged once instead of per call.
        self._headers = dict(self.session.headers)
        self._urls: dict[str, str] = {}

    def send(
        self,
        method: str,
        url: str,
        body: bytes | Iterable[bytes],
        headers: dict[str, str],
        *,
        stream: bool = False,
    ) -> requests.Response:
        """One request with a streamed response; the caller must close it. A body that is not
        bytes (an upload of known length) is read in blocks as it is sent.

        An endpoint that accepted the connection and then closed it or sent something that is
        not HTTP is :class:`Dropped`, not :class:`ConnectFailed`: it is up, but gave no answer.
        """
        try:
            request = PreparedRequest()
            request.prepare_method(method)
            request.url = self._prepared_url(url)
            request.prepare_headers(self._headers | headers)
            request.prepare_body(body or None, None)
            timeout = self.stream_timeout if stream else self.timeout
            return self.adapter.send(request, stream=True, timeout=timeout)
        except requests.ConnectTimeout as exc:
            raise ConnectFailed(f"connect timeout: {exc}") from None
        except requests.ConnectionError as exc:
            if exc.args and isinstance(exc.args[0], ProtocolError):
                raise Dropped("the endpoint closed the connection or did not speak HTTP") from None
            raise ConnectFailed(f"connection failed: {type(exc).__name__}") from None
        except requests.Timeout:
            raise TimedOut("upstream read timeout") from None
        except requests.RequestException as exc:
            raise BadGateway(f"upstream request failed: {type(exc).__name__}") from None

    def _prepared_url(self, url: str) -> str:
        """``url`` normalised as requests does it, once per distinct URL (endpoints × routes)."""
        prepared = self._urls.get(url)
        if prepared is None:
            request = PreparedRequest()
            request.prepare_url(url, None)
            assert request.url is not None  # prepare_url always sets it
            if len(self._urls) >= _MAX_URLS:
                self._urls.clear()
            prepared = self._urls[url] = request.url
        return prepared

    def get(self, url: str, headers: dict[str, str], timeout: float) -> tuple[int, Any]:
        """GET a small JSON document (discovery probes): (status, parsed body or None)."""
        try:
            resp = self.session.get(
                url,
                headers=headers,
                timeout=(min(timeout, self.timeout[0]), timeout),
                allow_redirects=False,
            )
        except requests.ConnectionError as exc:
            raise ConnectFailed(f"connection failed: {type(exc).__name__}") from None
        except requests.Timeout:
            raise TimedOut("probe timed out") from None
        except requests.RequestException as exc:
            raise BadGateway(f"probe failed: {type(exc).__name__}") from None
        try:
            body = orjson.loads(resp.content) if resp.content else None
        except orjson.JSONDecodeError:
            body = None
        return resp.status_code, body

    def close(self) -> None:
        self.session.close()


def validate_base_url(url: str) -> str:
    """An endpoint's base URL, normalised; ValueError when it is not a plain http(s) URL."""
    from urllib.parse import urlsplit

    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise ValueError("the endpoint URL must start with http:// or https://")
    if not parts.hostname:
        raise ValueError("the endpoint URL has no host")
    address = parse_address(parts.hostname)
    if isinstance(address, IPv4Address) and parts.hostname != str(address):
        # 0x7f000001, 2130706433, 127.1: each reads differently to a person and to a resolver.
        raise ValueError(
            f"the endpoint URL's host {parts.hostname} is not a canonical address; "
            f"write it as {address}"
        )
    if parts.username or parts.password:
        raise ValueError("the endpoint URL must not contain credentials; use --upstream-key")
    if parts.query or parts.fragment:
        raise ValueError("the endpoint URL must not have a query or fragment")
    try:
        _ = parts.port
    except ValueError as exc:
        raise ValueError(f"the endpoint URL has an invalid port: {exc}") from None
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    return f"{parts.scheme}://{parts.netloc}{path}"
