"""Configuration parsing."""

import pytest

from packet.config import (
    ConfigError,
    load_settings,
    normalize_database_url,
    request_read_timeout,
)
from packet.money import NotAnAmount, dollars_to_micros


def settings(tmp_path, **env):
    return load_settings(env, instance_path=str(tmp_path))


def test_defaults(tmp_path):
    s = settings(tmp_path)
    assert s.database_url.startswith("sqlite:///") and s.database_url.endswith("packet.db")
    assert s.storage_uri == "memory://"
    assert s.tiers["free"] == {"rpm": 20, "tpm": 40000}
    assert s.tiers["premium"] == {"rpm": 200, "tpm": 500000}
    assert s.metrics_multiprocess_dir is None
    assert settings(tmp_path, PROMETHEUS_MULTIPROC_DIR="/m").metrics_multiprocess_dir == "/m"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u:p@h:5432/d", "postgresql+psycopg://u:p@h:5432/d"),
        ("postgresql://u@h/d", "postgresql+psycopg://u@h/d"),
        ("postgresql+psycopg://u@h/d", "postgresql+psycopg://u@h/d"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_database_url_normalised(url, expected):
    assert normalize_database_url(url) == expected


def test_tiers_merge_and_add(tmp_path):
    s = settings(
        tmp_path, PACKET_TIERS='{"free": {"rpm": 5}, "bench": {"rpm": 1000000, "tpm": 1000000000}}'
    )
    assert s.tiers["free"] == {"rpm": 5, "tpm": 40000}
    assert s.tiers["bench"]["tpm"] == 1_000_000_000
    assert s.tiers["standard"]["rpm"] == 60
    assert s.check_tier("bench") == "bench"
    with pytest.raises(ValueError, match="unknown tier 'gold'; configured: free, standard"):
        s.check_tier("gold")


@pytest.mark.parametrize(
    "raw", ["not json", "[]", '{"x": {"rpm": 0, "tpm": 1}}', '{"x": {"rpm": 1}}']
)
def test_bad_tiers_rejected(tmp_path, raw):
    with pytest.raises(ConfigError):
        settings(tmp_path, PACKET_TIERS=raw)


def test_bad_number_rejected(tmp_path):
    with pytest.raises(ConfigError):
        settings(tmp_path, PACKET_READ_TIMEOUT="soon")


@pytest.mark.parametrize(
    ("text", "micros"), [("25", 25_000_000), ("0.50", 500_000), ("-5", -5_000_000), ("0.000001", 1)]
)
def test_dollars(text, micros):
    assert dollars_to_micros(text) == micros


@pytest.mark.parametrize("bad", ["lots", "nan", "inf", ""])
def test_not_an_amount_is_refused_as_money_and_as_configuration(tmp_path, bad):
    with pytest.raises(NotAnAmount):
        dollars_to_micros(bad)
    with pytest.raises(ConfigError, match="PACKET_PRICE_INPUT"):
        settings(tmp_path, PACKET_PRICE_INPUT=bad or "x")
    with pytest.raises(ConfigError, match="PACKET_PRICES"):
        settings(tmp_path, PACKET_PRICES=f'{{"m": {{"input": "{bad}"}}}}')


def test_prices(tmp_path):
    s = settings(
        tmp_path,
        PACKET_PRICE_INPUT="0.5",
        PACKET_PRICE_OUTPUT="1.5",
        PACKET_PRICES='{"big": {"input": 3, "output": 15}}',
    )
    assert s.price_for("other").input_per_million == 500_000
    assert s.price_for("big").output_per_million == 15_000_000


def test_request_read_timeout(tmp_path):
    assert settings(tmp_path).request_read_timeout == 30.0
    assert settings(tmp_path, PACKET_REQUEST_READ_TIMEOUT="2.5").request_read_timeout == 2.5
    assert request_read_timeout({"PACKET_REQUEST_READ_TIMEOUT": "4"}) == 4.0
    for bad in ("0", "-1", "soon"):
        with pytest.raises(ConfigError):
            settings(tmp_path, PACKET_REQUEST_READ_TIMEOUT=bad)


def test_endpoint_rules(tmp_path):
    s = settings(
        tmp_path,
        PACKET_ENDPOINT_ALLOW="10.0.0.0/8, 192.168.1.7,[fd00::1],GPU.Example.,*.pods.example",
        PACKET_ENDPOINT_DENY="127.0.0.0/8,::1",
    )
    assert [str(n) for n in s.endpoint_allow.networks] == [
        "10.0.0.0/8",
        "192.168.1.7/32",
        "fd00::1/128",
    ]
    assert s.endpoint_allow.hosts == {"gpu.example"}
    assert s.endpoint_allow.suffixes == (".pods.example",)
    assert [str(n) for n in s.endpoint_deny.networks] == ["127.0.0.0/8", "::1/128"]
    empty = settings(tmp_path)
    assert not empty.endpoint_allow and not empty.endpoint_deny


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("0x7f000001", "not a canonical address"),
        ("2130706433", "not a canonical address"),
        ("127.1", "not a canonical address"),
        ("10.0.0.0/33", "not a valid CIDR"),
        ("*", "not a CIDR, an address or a hostname"),
        ("pods.*.example", "not a CIDR, an address or a hostname"),
        ("http://10.0.0.5", "not a CIDR, an address or a hostname"),
        ("a..b", "not a CIDR, an address or a hostname"),
    ],
)
def test_bad_endpoint_rules_rejected(tmp_path, raw, reason):
    for name in ("PACKET_ENDPOINT_ALLOW", "PACKET_ENDPOINT_DENY"):
        with pytest.raises(ConfigError, match=f"{name}: .*{reason}"):
            settings(tmp_path, **{name: f"10.0.0.1,{raw}"})


@pytest.mark.parametrize(
    "raw", ["api.example.com", "ftp://api.example.com", "https://", "https://a.example/?x=1"]
)
def test_public_url_must_be_an_http_base_url(tmp_path, raw):
    with pytest.raises(ConfigError):
        settings(tmp_path, PACKET_PUBLIC_URL=raw)
    assert settings(tmp_path, PACKET_PUBLIC_URL="https://a.example/gw/").public_url == (
        "https://a.example/gw"
    )
    assert settings(tmp_path).public_url is None
