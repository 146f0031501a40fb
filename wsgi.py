"""Entry point for gunicorn. gevent's monkey-patching must happen before anything imports
sockets, ssl, requests or psycopg; gunicorn's gevent worker already does it in
``init_process``, and this guard covers other servers."""

from gevent import monkey

if not monkey.is_module_patched("socket"):
    monkey.patch_all()

from packet import create_app

app = create_app()
