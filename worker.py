"""Entry point of the batch worker (``flask --app app worker`` runs it; Procfile ``worker:``).
gevent's monkey-patching must happen before anything imports sockets, requests or psycopg."""

from gevent import monkey

monkey.patch_all()

from packet import create_app  # noqa: E402
from packet.batch.main import main  # noqa: E402

if __name__ == "__main__":
    main(create_app())
