"""Entry point for the ``flask`` CLI: ``flask --app app accounts list``."""

from packet import create_app

app = create_app()
