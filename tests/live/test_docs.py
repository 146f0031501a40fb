"""The API reference page, rendered by a real headless Chromium against the real gateway:
Swagger UI loads from the gateway's own assets and lays out the operations of /openapi.json."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import requests

pytestmark = pytest.mark.live

CHROMIUM = shutil.which("chromium")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (.ci/run installs it)")
def test_docs_page_renders_every_operation_with_local_assets_only(live, tmp_path):
    url = f"{live.gateway.url}/docs"
    done = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            # Any host but the gateway is unreachable: a CDN asset would not load.
            "--proxy-server=http://127.0.0.1:9",
            "--proxy-bypass-list=127.0.0.1",
            "--virtual-time-budget=15000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    document = requests.get(f"{live.gateway.url}/openapi.json", timeout=10).json()
    rendered = set(re.findall(r'data-path="([^"]+)"', dom))
    assert rendered == set(document["paths"]), set(document["paths"]) ^ rendered
    assert dom.count('class="opblock ') >= sum(len(item) for item in document["paths"].values())
    assert len(rendered) > 15 and "Packet gateway" in dom
