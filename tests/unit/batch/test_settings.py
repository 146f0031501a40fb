"""The batch and files settings, and the discounted price."""

import pytest

from packet.config import ConfigError, load_settings
from packet.money import discounted


def settings(tmp_path, **env):
    return load_settings(env, instance_path=str(tmp_path))


def test_defaults_and_overrides(tmp_path):
    s = settings(tmp_path)
    assert s.files_max_bytes == 200 * 1024 * 1024 and s.files_url is None
    assert (s.batch.discount_ppm, s.batch.concurrency, s.batch.priority) == (500_000, 8, None)
    assert s.batch.window_seconds == 86400 and s.batch.lease_seconds == 300
    s = settings(
        tmp_path,
        PACKET_BATCH_DISCOUNT="0.25",
        PACKET_BATCH_PRIORITY="-3",
        PACKET_BATCH_CONCURRENCY="0",
        PACKET_FILES_URL="s3://bucket/some/prefix/",
    )
    assert (s.batch.discount_ppm, s.batch.priority, s.batch.concurrency) == (250_000, -3, 1)
    assert s.files_url == "s3://bucket/some/prefix"


@pytest.mark.parametrize(
    "env",
    [
        {"PACKET_BATCH_DISCOUNT": "1.5"},
        {"PACKET_BATCH_DISCOUNT": "-0.1"},
        {"PACKET_BATCH_PRIORITY": "high"},
        {"PACKET_FILES_URL": "https://bucket"},
        {"PACKET_FILES_URL": "s3://"},
    ],
)
def test_refused(tmp_path, env):
    with pytest.raises(ConfigError):
        settings(tmp_path, **env)


def test_the_discount_rounds_up_to_the_micro_dollar():
    assert discounted(1001, 500_000) == 501
    assert discounted(1000, 500_000) == 500
    assert discounted(7, 0) == 0 and discounted(7, 1_000_000) == 7
