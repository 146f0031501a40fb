"""gunicorn settings for the gateway (read by the Procfile and `make run`).

Only the standard library is imported here: the gevent worker patches sockets in
``init_process``, after this file is read, and nothing may import requests/psycopg before.
"""

import gc
import os
import shutil
import tempfile

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8080')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# gunicorn's gevent worker, answering in the JSON envelope and bounding request heads.
worker_class = "packet.server.GeventWorker"
# Streams are long-lived: one worker should hold thousands of them.
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "4000"))
# For async workers `timeout` is a heartbeat, not a request limit.
timeout = 60
# On SIGTERM, running streams get this long to finish before the worker exits; usage is
# flushed in worker_exit. Heroku sends SIGKILL 30 s after SIGTERM, so stay below that there.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "25"))
# Idle keep-alive connections hold a graceful stop for up to this long: keep it short.
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
accesslog = None
control_socket_disable = True

# The workers' metrics files: a folder made here is removed when gunicorn stops (on_exit);
# one the operator named is emptied at start and left in place.
_MADE_METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
if _MADE_METRICS_DIR:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="packet-metrics-")
else:
    shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)
# /metrics on its own address, served by the master (the public port then has none).
METRICS_BIND = os.environ.get("PACKET_METRICS_BIND", "")


# Streams still open this many seconds before graceful_timeout ends are stopped (and metered).
STREAM_STOP_MARGIN = 2.0
# Allocations between two collections of the youngest generation (CPython's default: 700).
GC_THRESHOLD = int(os.environ.get("GUNICORN_GC_THRESHOLD", "20000"))


def _runtime(worker):
    app = getattr(worker, "wsgi", None)
    return getattr(app, "extensions", {}).get("packet") if app is not None else None


def post_worker_init(worker):
    """Tune the garbage collector; start the background work; watch for the graceful stop so
    streams end, metered, before the master's SIGKILL."""
    # The app and the modules loaded so far live as long as the worker: freezing them keeps the
    # collector from scanning them again, and collecting the young generation every 20,000
    # allocations rather than 700 makes pauses rarer: with many streams open, the defaults'
    # pauses delay first tokens (measured in CHANGELOG.md).
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 10, 10)
    runtime = _runtime(worker)
    if runtime is not None:
        # Before any request: an idle worker still flushes, and recovers dead workers' journals.
        runtime.start()
        grace = worker.cfg.graceful_timeout
        runtime.watch_shutdown(
            lambda: worker.alive, grace, margin=min(STREAM_STOP_MARGIN, grace / 2)
        )


def worker_exit(server, worker):
    """Flush buffered usage (and batched spans) before the worker goes away."""
    runtime = _runtime(worker)
    if runtime is not None:
        runtime.close()
        from packet import tracing

        tracing.shutdown()


def when_ready(server):
    """Serve /metrics on PACKET_METRICS_BIND from the master, summed over the workers."""
    if METRICS_BIND:
        from prometheus_client import CollectorRegistry, multiprocess, start_http_server

        host, _, port = METRICS_BIND.rpartition(":")
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        start_http_server(int(port), addr=host.strip("[]") or "0.0.0.0", registry=registry)
        server.log.info("metrics on http://%s/metrics", METRICS_BIND)


def on_exit(server):
    """Remove the metrics folder this file made: nothing is left behind in the temp folder."""
    if _MADE_METRICS_DIR:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def child_exit(server, worker):
    """Let prometheus-client drop a dead worker's live gauges."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
