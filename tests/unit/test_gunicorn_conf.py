"""gunicorn.conf.py's worker hooks, called as gunicorn calls them (no server)."""

import gc
import runpy
from pathlib import Path

import pytest

CONF = Path(__file__).resolve().parents[2] / "gunicorn.conf.py"


class Worker:
    """A worker without an app (the hooks then only tune the process)."""

    wsgi = None


@pytest.fixture
def restored_gc():
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_worker_init_freezes_startup_objects_and_collects_less_often(
    restored_gc, monkeypatch, tmp_path
):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    monkeypatch.setenv("GUNICORN_GC_THRESHOLD", "12345")
    conf = runpy.run_path(str(CONF))
    conf["post_worker_init"](Worker())
    assert gc.get_threshold()[0] == 12345
    assert gc.get_freeze_count() > 1000  # the modules and objects loaded so far
