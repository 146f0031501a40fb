"""The endpoint policy: built-in denials, ALLOW / DENY rules, address forms, add-time checks.

No real DNS: every resolver here is a table."""

from __future__ import annotations

import re
import socket

import pytest

from packet.config import load_settings
from packet.upstream.errors import Blocked
from packet.upstream.policy import EndpointPolicy, parse_address


def policy(allow: str = "", deny: str = "", **names: list[str]) -> EndpointPolicy:
    """A policy from the environment variables' text; ``names`` is the fake DNS (``_`` → ``.``)."""
    settings = load_settings(
        {"PACKET_ENDPOINT_ALLOW": allow, "PACKET_ENDPOINT_DENY": deny}, instance_path="/tmp"
    )
    table = {name.replace("_", "."): found for name, found in names.items()}

    def resolver(host: str, port: int) -> list[str]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    return EndpointPolicy(settings.endpoint_allow, settings.endpoint_deny, resolver=resolver)


def refused(p: EndpointPolicy, host: str, match: str | None = None) -> str:
    with pytest.raises(Blocked, match=re.escape(match) if match else None) as caught:
        p.addresses(host, 8000)
    return str(caught.value)


@pytest.mark.parametrize(
    ("host", "rule"),
    [
        ("169.254.169.254", "link-local"),
        ("169.254.1.1", "link-local"),
        ("[fe80::1]", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("[fd00:ec2::254]", "metadata"),
        ("100.100.100.200", "metadata"),
        ("0.0.0.0", "unspecified"),
        ("[::]", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("[ff02::1]", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("[::ffff:169.254.169.254]", "link-local"),
        ("[::ffff:a9fe:a9fe]", "link-local"),
        ("0251.0376.0251.0376", "link-local"),
        ("2852039166", "link-local"),
        ("0xa9fea9fe", "link-local"),
        ("metadata.google.internal", "metadata service name"),
        ("Metadata.Google.Internal.", "metadata service name"),
        ("metadata", "metadata service name"),
        ("instance-data", "metadata service name"),
    ],
)
def test_default_denials(host: str, rule: str) -> None:
    assert "denied by default" in refused(policy(), host, rule)


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "[::1]", "10.0.0.5", "192.168.1.10", "172.16.0.1", "8.8.8.8"]
)
def test_loopback_private_and_public_addresses_are_allowed_by_default(host: str) -> None:
    assert policy().addresses(host, 8000) == [str(parse_address(host))]


def test_loopback_can_be_denied_in_every_spelling() -> None:
    p = policy(deny="127.0.0.0/8,::1")
    for host in ("127.0.0.1", "127.5.5.5", "0x7f000001", "2130706433", "127.1", "[::1]"):
        assert "PACKET_ENDPOINT_DENY" in refused(p, host), host
    assert "PACKET_ENDPOINT_DENY" in refused(p, "[::ffff:127.0.0.1]")
    assert p.addresses("10.0.0.5", 8000) == ["10.0.0.5"]


def test_a_name_is_checked_by_every_address_it_resolves_to() -> None:
    p = policy(deny="127.0.0.0/8", pod_example=["10.0.0.5"], evil_example=["10.0.0.6", "127.0.0.1"])
    assert p.addresses("pod.example", 8000) == ["10.0.0.5"]
    assert "127.0.0.1 is denied" in refused(p, "evil.example")


def test_names_resolving_to_metadata_are_refused() -> None:
    p = policy(rebind_example=["169.254.169.254"], mapped_example=["::ffff:169.254.169.254"])
    refused(p, "rebind.example", "link-local")
    refused(p, "mapped.example", "link-local")


def test_deny_hostnames_exact_and_wildcard() -> None:
    p = policy(
        deny="vault.corp,*.internal.example",
        vault_corp=["10.0.0.9"],
        a_internal_example=["10.0.0.7"],
        internal_example=["10.0.0.8"],
    )
    refused(p, "vault.corp", "host vault.corp is denied")
    refused(p, "a.internal.example", "denied by PACKET_ENDPOINT_DENY")
    refused(p, "x.y.internal.example", "denied by PACKET_ENDPOINT_DENY")
    assert p.addresses("internal.example", 80) == ["10.0.0.8"]  # *.suffix: subdomains only


def test_a_non_empty_allow_list_allows_only_what_it_names() -> None:
    p = policy(
        allow="10.1.0.0/16,*.pods.example,gpu.example",
        a_pods_example=["192.168.5.5"],
        gpu_example=["172.16.0.1"],
        other_example=["192.168.5.6"],
        inside_example=["10.1.2.3"],
    )
    assert p.addresses("10.1.2.3", 8000) == ["10.1.2.3"]
    assert p.addresses("a.pods.example", 8000) == ["192.168.5.5"]
    assert p.addresses("gpu.example", 8000) == ["172.16.0.1"]
    assert p.addresses("inside.example", 8000) == ["10.1.2.3"]
    refused(p, "10.2.0.1", "not in PACKET_ENDPOINT_ALLOW")
    refused(p, "127.0.0.1", "not in PACKET_ENDPOINT_ALLOW")
    refused(p, "other.example", "not in PACKET_ENDPOINT_ALLOW")


def test_deny_wins_over_allow() -> None:
    p = policy(allow="10.0.0.0/8,*.pods.example", deny="10.0.0.5", a_pods_example=["10.0.0.5"])
    assert p.addresses("10.0.0.6", 80) == ["10.0.0.6"]
    refused(p, "10.0.0.5", "PACKET_ENDPOINT_DENY")
    refused(p, "a.pods.example", "PACKET_ENDPOINT_DENY")


def test_an_allowed_name_does_not_open_the_builtin_denials() -> None:
    p = policy(allow="*.pods.example,0.0.0.0/0", a_pods_example=["169.254.169.254"])
    refused(p, "a.pods.example", "link-local")
    refused(p, "169.254.169.254", "link-local")  # a broad ALLOW is not an exemption


def test_allow_inside_a_builtin_denial_lifts_it_for_that_range_only() -> None:
    p = policy(allow="169.254.10.0/24,metadata,10.0.0.0/8", metadata=["10.0.0.1"])
    assert p.addresses("169.254.10.5", 80) == ["169.254.10.5"]
    assert p.addresses("metadata", 80) == ["10.0.0.1"]
    refused(p, "169.254.169.254", "link-local")
    refused(p, "metadata.google.internal", "metadata service name")


def test_a_denied_name_is_not_looked_up() -> None:
    looked_up: list[str] = []
    p = EndpointPolicy(resolver=lambda host, port: looked_up.append(host) or ["10.0.0.1"])
    with pytest.raises(Blocked):
        p.addresses("metadata.google.internal", 80)
    assert looked_up == []


def test_check_url_resolves_and_accepts_names_that_do_not_resolve_yet() -> None:
    p = policy(pod_example=["10.0.0.5"], meta_example=["169.254.169.254"])
    assert p.check_url("http://pod.example:8000") == ["10.0.0.5"]
    assert p.check_url("https://[::1]") == ["::1"]
    assert p.check_url("http://not-yet.example:8000") == []
    with pytest.raises(Blocked, match="link-local"):
        p.check_url("http://meta.example")
    with pytest.raises(Blocked, match="metadata service name"):
        p.check_url("http://metadata.google.internal")


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("pod.example", None),
    ],
)
def test_parse_address_reads_every_spelling(text: str, address: str | None) -> None:
    parsed = parse_address(text)
    assert (str(parsed) if parsed else None) == address
