"""OpenTelemetry: the spans of one request reach an OTLP/HTTP collector, and the simulated
vLLM saw the traceparent of the gateway's upstream span."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

pytestmark = pytest.mark.live


class Collector(ThreadingHTTPServer):
    """A tiny OTLP/HTTP collector on 127.0.0.1: keeps every span it is sent."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Receive)
        self.spans: list = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Receive(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        message = ExportTraceServiceRequest.FromString(body)
        for resource in message.resource_spans:
            for scope in resource.scope_spans:
                self.server.spans.extend(scope.spans)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def collector():
    server = Collector()
    yield server
    server.shutdown()


def test_spans_of_one_request_and_the_traceparent_vllm_saw(launcher, _databases, collector):
    sim = launcher.sim()
    gateway = launcher.gateway(
        _databases["sqlite"], upstreams=[sim.url], OTEL_EXPORTER_OTLP_ENDPOINT=collector.url
    )
    _, key = _databases["sqlite"].account()
    gateway.client(key).chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": "a b"}],
        max_tokens=2,
        extra_headers={"X-Request-ID": "traced-1"},
    )
    traceparent = sim.request("traced-1")["traceparent"]
    assert traceparent is not None
    _, trace_id, parent_id, _ = traceparent.split("-")
    wanted = {"auth", "routing", "limits", "metering", "upstream"}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        mine = [s for s in collector.spans if s.trace_id.hex() == trace_id]
        if wanted <= {s.name for s in mine} and len(mine) >= 6:
            break
        time.sleep(0.1)
    names = {s.name for s in mine}
    assert wanted <= names, names
    upstream = next(s for s in mine if s.name == "upstream")
    assert upstream.span_id.hex() == parent_id  # vLLM joins the trace under the upstream span
    server = next(s for s in mine if not s.parent_span_id)
    assert server.name.endswith("/v1/chat/completions")
    log = gateway.output()
    assert f"trace_id={trace_id}" in log
