"""The Heroku-style deploy files agree with each other and with the configuration."""

import json
from pathlib import Path

from packet.variables import names

ROOT = Path(__file__).resolve().parents[2]
PENDING = {"SECRET_KEY"}  # read by the dashboard's sign-in, which brings its own row


def test_app_json_matches_the_procfile_and_the_variables():
    app = json.loads((ROOT / "app.json").read_text())
    procfile = dict(
        line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line
    )
    assert set(app["formation"]) == set(procfile) - {"release"} == {"web", "worker"}
    assert procfile["worker"].strip() == "flask --app app worker"
    assert procfile["release"].strip() == "flask --app app db upgrade"
    plans = {addon["plan"].split(":")[0] for addon in app["addons"]}
    assert plans == {"heroku-postgresql", "heroku-redis"}
    assert set(app["env"]) - set(names()) <= PENDING
    assert all(entry["description"] for entry in app["env"].values())


def test_python_version_meets_requires_python():
    major, minor = map(int, (ROOT / ".python-version").read_text().strip().split("."))
    assert (major, minor) >= (3, 11)  # pyproject.toml: requires-python >= 3.11
