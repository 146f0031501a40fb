"""Entry point for the ``flask`` CLI: ``flask --app app accounts list``."""

import sys

from packet import create_app
from packet.config import ConfigError

try:
    app = create_app()
except ConfigError as exc:  # said plainly, for `flask doctor` and every other command
    sys.exit(f"configuration problem: {exc}")
