"""Every new upstream connection is checked against the endpoint policy (DNS rebinding).

A local HTTP/1.1 server on 127.0.0.1 stands in for vLLM; names are resolved by an injected
table, never by real DNS."""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from packet.addresses import AddressRules
from packet.upstream.client import UpstreamClient
from packet.upstream.errors import Blocked, ConnectFailed
from packet.upstream.policy import EndpointPolicy

LOOPBACK_DENIED = AddressRules(networks=(ipaddress.ip_network("127.0.0.0/8"),))


class _KeepAlive(BaseHTTPRequestHandler):
    """Answers every request with ``{}`` on a kept-alive connection; records Host headers."""

    protocol_version = "HTTP/1.1"
    hosts: list[str] = []

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        _KeepAlive.hosts.append(self.headers["Host"])
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def port() -> Iterator[int]:
    _KeepAlive.hosts = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KeepAlive)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


class Table:
    """A resolver that answers from a dict and counts its lookups."""

    def __init__(self, **names: list[str]) -> None:
        self.names = {name.replace("_", "."): found for name, found in names.items()}
        self.lookups = 0

    def __call__(self, host: str, port: int) -> list[str]:
        self.lookups += 1
        if host not in self.names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.names[host]


def client(resolver: Table, deny: AddressRules | None = None) -> UpstreamClient:
    policy = EndpointPolicy(deny=deny, resolver=resolver)
    return UpstreamClient(connect_timeout=1, read_timeout=5, pool_maxsize=4, policy=policy)


def test_a_name_connects_to_the_checked_address_and_keeps_its_host_header(port: int) -> None:
    resolver = Table(pod_test=["127.0.0.1"])
    upstream = client(resolver)
    try:
        assert upstream.get(f"http://pod.test:{port}/health", {}, 2) == (200, {})
        response = upstream.send("POST", f"http://pod.test:{port}/v1/completions", b"{}", {})
        assert response.status_code == 200
        response.close()
    finally:
        upstream.close()
    assert _KeepAlive.hosts == [f"pod.test:{port}"] * 2


def test_a_name_resolving_to_a_denied_address_is_refused_before_connecting(port: int) -> None:
    upstream = client(Table(rebind_test=["127.0.0.1"]), deny=LOOPBACK_DENIED)
    try:
        with pytest.raises(Blocked, match=re.escape("127.0.0.1 is denied by PACKET_ENDPOINT_DENY")):
            upstream.get(f"http://rebind.test:{port}/v1/models", {}, 2)
        with pytest.raises(Blocked):
            upstream.send("POST", f"http://rebind.test:{port}/v1/chat/completions", b"{}", {})
        with pytest.raises(Blocked):
            upstream.send("POST", f"http://127.0.0.1:{port}/v1/chat/completions", b"{}", {})
    finally:
        upstream.close()
    assert _KeepAlive.hosts == []  # nothing reached the server


def test_rebinding_after_the_first_check_is_caught_on_the_next_new_connection(port: int) -> None:
    resolver = Table(pod_test=["127.0.0.1"])
    deny = AddressRules(networks=(ipaddress.ip_network("127.0.0.2/32"),))
    upstream = client(resolver, deny=deny)
    try:
        assert upstream.get(f"http://pod.test:{port}/health", {}, 2)[0] == 200
        resolver.names["pod.test"] = ["127.0.0.2"]  # the name now points somewhere denied
        upstream.session.close()  # drop the pooled connection: the next one is new
        with pytest.raises(Blocked, match=re.escape("127.0.0.2")):
            upstream.get(f"http://pod.test:{port}/health", {}, 2)
    finally:
        upstream.close()


def test_kept_alive_connections_are_not_checked_again(port: int) -> None:
    resolver = Table(pod_test=["127.0.0.1"])
    upstream = client(resolver)
    try:
        for _ in range(20):
            response = upstream.send("POST", f"http://pod.test:{port}/v1/completions", b"{}", {})
            assert response.content == b"{}"
            response.close()
    finally:
        upstream.close()
    assert resolver.lookups == 1


def test_each_checked_address_is_tried_in_turn(port: int) -> None:
    # Nothing listens on 127.0.0.2 (the server is bound to 127.0.0.1): refused, then the next.
    upstream = client(Table(pod_test=["127.0.0.2", "127.0.0.1"]))
    try:
        assert upstream.get(f"http://pod.test:{port}/health", {}, 2) == (200, {})
    finally:
        upstream.close()


def test_a_name_that_does_not_resolve_is_a_connect_failure() -> None:
    upstream = client(Table())
    try:
        with pytest.raises(ConnectFailed):
            upstream.get("http://missing.test:8000/health", {}, 2)
        with pytest.raises(ConnectFailed):
            upstream.send("POST", "http://missing.test:8000/v1/completions", b"{}", {})
    finally:
        upstream.close()


def test_https_connections_keep_the_hostname_for_sni_and_verification() -> None:
    upstream = client(Table())
    try:
        pool = upstream.adapter.poolmanager.connection_from_url("https://pod.test:8443")
        conn = pool._new_conn()
        assert conn.host == "pod.test"  # urllib3 sends SNI and verifies against this
        assert type(conn).policy is upstream.policy
    finally:
        upstream.close()
