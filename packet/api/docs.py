"""GET /openapi.json and GET /docs: the public API's contract and a page rendering it.

Neither needs a key (the v1 blueprint's auth does not apply here) and neither touches the
database: the document is built once per app, the page and its assets are static.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from flask import Blueprint, Response, current_app, render_template, url_for

from ..openapi import serialized

bp = Blueprint("docs", __name__)

# The page's assets, under the app's static folder (vendor/README.md names the package).
ASSETS = ("vendor/swagger-ui/swagger-ui.css", "vendor/swagger-ui/swagger-ui-bundle.js", "docs.js")


@bp.get("/openapi.json")
def openapi_json() -> Response:
    """The OpenAPI 3.1 document of every public route."""
    return Response(serialized(current_app), mimetype="application/json")


@bp.get("/docs")
def docs() -> str:
    """The API page: Swagger UI, served by the gateway itself, rendering /openapi.json."""
    css, bundle, init = (asset_url(name) for name in ASSETS)
    return render_template(
        "docs.html", css=css, bundle=bundle, init=init, spec=url_for("docs.openapi_json")
    )


def asset_url(filename: str) -> str:
    """A static asset's URL with its content's fingerprint: assets are cached for long
    (SEND_FILE_MAX_AGE_DEFAULT), and a changed file gets a new URL."""
    assert current_app.static_folder is not None  # the package's static folder
    return url_for("static", filename=filename, v=_fingerprint(current_app.static_folder, filename))


@functools.cache
def _fingerprint(folder: str, filename: str) -> str:
    return hashlib.sha256((Path(folder) / filename).read_bytes()).hexdigest()[:12]
