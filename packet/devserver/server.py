"""The gevent WSGI server, and the raw client socket it lends the app.

The socket is how a stream notices that its client has gone, and how the ``x_sim_break`` knob
answers like a broken server. ``select`` and ``socket`` are looked up at call time, after
gevent's monkey-patching.
"""

from __future__ import annotations

import select
import socket
import sys
from collections.abc import Callable
from typing import Any


def serve(host: str, port: int, app: Callable[..., Any], models: tuple[str, ...]) -> None:
    """Serve ``app`` forever with gevent's WSGI server."""
    from gevent.pywsgi import WSGIHandler, WSGIServer

    class Handler(WSGIHandler):
        """Exposes the client socket, so a stream can notice the client has gone."""

        def get_environ(self) -> dict[str, Any]:
            environ = super().get_environ()
            environ["sim.socket"] = self.socket
            return environ

    # Like vLLM's uvicorn (and gunicorn): no Nagle delay between a response's header and body
    # writes on a kept-alive connection (40 ms with the client's delayed ACK); a backlog that
    # takes a thousand connections at once.
    listener = socket.create_server((host, port), backlog=2048)
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    server = WSGIServer(listener, app, log=None, error_log=None, handler_class=Handler)
    print(
        f"SIMULATED vLLM server (not a real model) on http://{host}:{port} serving "
        f"{', '.join(models)}",
        file=sys.stderr,
        flush=True,
    )
    server.serve_forever()


def peer_closed(sock: socket.socket | None) -> bool:
    """True when the client has closed its end (EOF or a reset is waiting on the socket)."""
    if sock is None:
        return False
    try:
        poller = select.poll()  # not select(): it fails for descriptors above 1023
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0)) and sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def break_connection(sock: socket.socket | None, how: str) -> list[bytes]:
    """Answer like a broken server: close at once, or send something that is not HTTP."""
    if sock is not None:
        if how == "garbage":
            sock.sendall(b"this is not HTTP\r\n\r\n")
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
    return []
