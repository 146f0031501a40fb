"""``flask --app app doctor`` run as an operator runs it, against real and missing services."""

import subprocess
import sys

import pytest
from flask_migrate import upgrade
from processes import ROOT, clean_env, free_port, migrated_app

from packet import create_app

pytestmark = pytest.mark.live


def doctor(**env: str) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "doctor"],
        cwd=ROOT,
        env=clean_env(**({"WEB_CONCURRENCY": "1"} | env)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stdout + done.stderr


@pytest.fixture(scope="module")
def sim(module_launcher):
    return module_launcher.sim()


@pytest.fixture(scope="module")
def database_url(tmp_path_factory):
    """A migrated database of this module's own: others' accounts may list stopped endpoints."""
    url = f"sqlite:///{tmp_path_factory.mktemp('doctor') / 'packet.db'}"
    migrated_app(url)
    return url


def test_a_sound_setup_exits_0(sim, database_url):
    status, said = doctor(DATABASE_URL=database_url, PACKET_UPSTREAMS=sim.url)
    assert status == 0, said
    assert "migrations at head" in said
    assert "/health 200, models simulated/vllm-demo (vLLM simulated)" in said
    assert "no problem found" in said


def test_a_stopped_endpoint(sim, database_url):
    stopped = f"http://127.0.0.1:{free_port()}"
    status, said = doctor(DATABASE_URL=database_url, PACKET_UPSTREAMS=f"{sim.url},{stopped}")
    assert status == 1
    assert f"PROBLEM] endpoint: shared pool #2 ({stopped}): not reachable" in said
    assert "Start the vLLM server" in said


def test_an_unreachable_redis(sim, database_url):
    status, said = doctor(
        DATABASE_URL=database_url,
        PACKET_UPSTREAMS=sim.url,
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
    )
    assert status == 1
    assert "PROBLEM] redis: unreachable" in said and "Check REDIS_URL" in said


def test_a_pending_migration_and_contradictions(sim, tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    app = create_app({"DATABASE_URL": url})
    with app.app_context():
        upgrade(revision="0003")
    status, said = doctor(
        DATABASE_URL=url, PACKET_UPSTREAMS=sim.url, WEB_CONCURRENCY="2", PACKET_UPSTREAM="typo"
    )
    assert status == 1
    assert "migrations pending: the database is at 0003" in said and "db upgrade" in said
    assert "WEB_CONCURRENCY=2 with limits in memory" in said
    assert "PACKET_UPSTREAM is set but the gateway reads no such variable" in said


def test_a_value_that_does_not_parse(tmp_path):
    status, said = doctor(DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}", PACKET_READ_TIMEOUT="soon")
    assert status == 1
    assert said.strip() == "configuration problem: PACKET_READ_TIMEOUT must be a number, got 'soon'"
