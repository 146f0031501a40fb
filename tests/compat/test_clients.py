"""The API page's LangChain, LlamaIndex and JavaScript examples against the real gateway.

The clients cannot share the test venv (LlamaIndex pins marshmallow<4, the gateway needs 4), so
each example runs as a subprocess: Python clients from ``.venv-compat``, the JavaScript SDK with
``node`` from ``tests/compat/js/node_modules``; ``make compat`` installs both. Without them
these tests skip, so ``make test`` passes anywhere.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import wait_rows

from packet import store
from packet.devserver import embeddings

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CLIENTS = HERE / "clients"
JS = HERE / "js"
VENV_PYTHON = ROOT / ".venv-compat" / "bin" / "python"
NODE = shutil.which("node")
SIM_MODEL = "simulated/vllm-demo"
# the simulator's answer is its word list, one word per token; 16 tokens when none are asked
ANSWER = (
    "This reply comes from the simulated vLLM server that ships with Packet gateway for local "
    "development"
)

needs_python_clients = pytest.mark.skipif(
    not (ROOT / ".venv-compat" / ".installed").exists(),
    reason="LangChain/LlamaIndex not installed (.venv-compat): run `make compat`",
)
needs_node_client = pytest.mark.skipif(
    NODE is None or not (JS / "node_modules" / ".installed").exists(),
    reason="node or the openai npm package (tests/compat/js/node_modules) missing: run `make compat`",
)
pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def processes(module_launcher, _databases):
    """A sim whose prefill outlasts the gateway's keep-alive interval, so every stream the
    clients read carries ``: ping`` comments before its first token, as on a busy GPU."""
    sim = module_launcher.sim("--first-token-delay", "0.5")
    gateway = module_launcher.gateway(
        _databases["sqlite"], upstreams=[sim.url], PACKET_KEEPALIVE_INTERVAL="0.1"
    )
    return sim, gateway


@pytest.fixture
def account(_databases) -> tuple[str, str]:
    """The fresh account whose key ``live`` runs the examples with: (name, key)."""
    return _databases["sqlite"].account()


@pytest.fixture
def live(processes, account, tmp_path):
    """Run one example with a fresh account's key; returns (run, sent)."""
    sim, gateway = processes
    _, key = account

    def run(
        command: list[str], api_key: str = key, check: bool = True
    ) -> subprocess.CompletedProcess:
        # A dead proxy for every host but 127.0.0.1: a client phoning home fails loudly here.
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp_path),
            "PACKET_BASE_URL": f"{gateway.url}/v1",
            "PACKET_KEY": api_key,
            "HTTP_PROXY": "http://127.0.0.1:9",
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "NO_PROXY": "127.0.0.1",
            # tiktoken's cache of encoding files: empty, whatever this machine has cached
            "TIKTOKEN_CACHE_DIR": str(tmp_path / "tiktoken"),
        }
        done = subprocess.run(
            command, cwd=HERE, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        if check:
            assert done.returncode == 0, done.stderr[-3000:]
        return done

    seen_before = max((r["seq"] for r in sim.requests()), default=0)

    def sent() -> list[dict]:
        """What the examples of this test sent to the upstream, through the gateway."""
        return [r for r in sim.requests() if r["seq"] > seen_before]

    return run, sent


def python_client(script: str) -> list[str]:
    return [str(VENV_PYTHON), str(CLIENTS / script)]


def node_client(script: str) -> list[str]:
    return [str(NODE), str(JS / script)]


@needs_python_clients
def test_langchain_invoke_example(live):
    run, sent = live
    assert run(python_client("langchain_invoke.py")).stdout == ANSWER + "\n"
    [request] = sent()
    assert request["path"] == "/v1/chat/completions"
    body = request["body"]
    assert body["model"] == SIM_MODEL
    assert body["messages"] == [{"role": "user", "content": "What is the capital of France?"}]
    assert body["temperature"] == 0.7 and body["stream"] is False
    assert "stream_options" not in body


@needs_python_clients
def test_langchain_stream(live):
    run, sent = live
    chunks = [
        json.loads(line) for line in run(python_client("langchain_stream.py")).stdout.splitlines()
    ]
    assert "".join(chunks) == ANSWER
    assert len([c for c in chunks if c]) == 16
    [request] = sent()
    assert request["body"]["stream"] is True and request["completion_tokens"] == 16


@needs_python_clients
def test_langchain_max_tokens_and_stream_usage(live):
    run, sent = live
    result = json.loads(run(python_client("langchain_options.py")).stdout)
    words = "This reply comes from the"
    for answer in (result["invoke"], result["stream"]):
        assert answer["content"] == words
        assert answer["usage"]["output_tokens"] == 5
        assert answer["usage"]["input_tokens"] > 0
    plain, streamed = sent()
    # LangChain sends max_tokens as max_completion_tokens: vLLM must get it untouched
    assert plain["body"]["max_completion_tokens"] == 5 and "max_tokens" not in plain["body"]
    assert streamed["body"]["max_completion_tokens"] == 5
    assert streamed["completion_tokens"] == 5


@needs_python_clients
def test_llamaindex_complete_example(live):
    run, sent = live
    assert run(python_client("llamaindex_complete.py")).stdout == ANSWER + "\n"
    [request] = sent()
    # OpenAILike is not a chat model unless told: the legacy completions route
    assert request["path"] == "/v1/completions"
    body = request["body"]
    assert body["model"] == SIM_MODEL and body["prompt"] == "Hello, how are you?"
    assert body["temperature"] == 0.1 and body["stream"] is False


@needs_python_clients
def test_llamaindex_stream_complete(live):
    run, sent = live
    deltas = [
        json.loads(line) for line in run(python_client("llamaindex_stream.py")).stdout.splitlines()
    ]
    assert "".join(deltas) == ANSWER
    assert len([d for d in deltas if d]) == 16
    [request] = sent()
    assert request["path"] == "/v1/completions" and request["body"]["stream"] is True


DOCUMENTS = ["Paris is the capital of France.", "Berlin is the capital of Germany."]
QUERY = DOCUMENTS[0]


def assert_sim_vectors(result: dict) -> None:
    """The vectors a client got are the simulator's for those texts (decoded from the base64
    the openai SDK asks for, hence float32): its dimension, equal for equal texts."""
    got = [*result["documents"], result["query"]]
    expected = [
        embeddings._vector(text, embeddings.DEFAULT_DIMENSIONS) for text in [*DOCUMENTS, QUERY]
    ]
    for vector, truth in zip(got, expected, strict=True):
        assert vector == pytest.approx(truth, abs=1e-6)
    assert result["query"] == result["documents"][0] != result["documents"][1]


def assert_embedding_requests(requests: list[dict]) -> None:
    """Each call is one /v1/embeddings request with the resolved model and the texts as
    strings: the documents together, then the query alone."""
    inputs = [DOCUMENTS, [QUERY]] * (len(requests) // 2)
    assert [r["body"]["input"] for r in requests] == inputs
    for request in requests:
        assert request["path"] == "/v1/embeddings" and request["model"] == SIM_MODEL
        assert request["body"]["model"] == SIM_MODEL
        assert request["body"]["encoding_format"] == "base64"  # the openai SDK's default


def assert_metered(database, name: str, requests: list[dict]) -> list:
    """One usage row per request, with the prompt tokens the simulator counted."""
    rows = wait_rows(database, name, len(requests))
    assert len(rows) == len(requests)
    by_id = {row.request_id: row for row in rows}
    for request in requests:
        row = by_id[request["request_id"]]
        assert (row.route, row.model, row.status) == ("embeddings", SIM_MODEL, 200)
        assert (row.prompt_tokens, row.completion_tokens) == (request["prompt_tokens"], 0)
        assert row.usage_source == "upstream"
    return rows


@needs_python_clients
def test_langchain_embeddings(live, account, _databases):
    run, sent = live
    result = json.loads(run(python_client("langchain_embeddings.py")).stdout)
    assert_sim_vectors(result)
    requests = sent()
    assert len(requests) == 2  # embed_documents, then embed_query
    assert_embedding_requests(requests)
    # the simulator counts words: 6 for each sentence
    assert [r["prompt_tokens"] for r in requests] == [12, 6]
    assert_metered(_databases["sqlite"], account[0], requests)


@needs_python_clients
def test_langchain_embeddings_default_tokenizes_with_a_download(live, account, _databases):
    """Left on, check_embedding_ctx_length has tiktoken fetch its encoding file first: with
    no way out and nothing cached, the example fails before sending anything."""
    run, sent = live
    failed = run(python_client("langchain_embeddings_tiktoken.py"), check=False)
    assert failed.returncode != 0 and failed.stdout == ""
    assert "openaipublic.blob.core.windows.net" in failed.stderr
    assert "ProxyError" in failed.stderr
    assert sent() == []
    assert _databases["sqlite"].run(store.usage_records, account[0]) == []


@needs_python_clients
def test_llamaindex_embeddings(live, account, _databases):
    run, sent = live
    result = json.loads(run(python_client("llamaindex_embeddings.py")).stdout)
    assert_sim_vectors(result["openai"])
    assert_sim_vectors(result["openai_like"])
    requests = sent()
    # get_text_embedding_batch, then get_query_embedding, for each client
    assert len(requests) == 4
    assert_embedding_requests(requests)
    assert [r["prompt_tokens"] for r in requests] == [12, 6, 12, 6]
    # OpenAIEmbedding's own model names are the gateway's to refuse: not a model served here
    refused = result["openai_name"]
    assert refused["status"] == 404 and refused["error"]["code"] == "model_not_found"
    assert "'text-embedding-3-small' does not exist" in refused["error"]["message"]
    assert_metered(_databases["sqlite"], account[0], requests)


@needs_node_client
def test_javascript_example(live):
    run, sent = live
    assert run(node_client("chat.mjs")).stdout == ANSWER + "\n"
    [request] = sent()
    assert request["body"]["model"] == SIM_MODEL
    assert request["body"]["messages"][0] == {
        "role": "system",
        "content": "You are a helpful assistant.",
    }


@needs_node_client
def test_javascript_streaming_example(live):
    run, sent = live
    assert run(node_client("stream.mjs")).stdout == ANSWER
    [request] = sent()
    assert request["body"]["stream"] is True and request["completion_tokens"] == 16


@needs_node_client
def test_javascript_error_handling_example(live, _databases):
    run, sent = live
    answered = run(node_client("errors.mjs"))
    assert answered.stdout == ANSWER + "\n"

    rejected = run(node_client("errors.mjs"), api_key="pk_live_" + "x" * 40)
    assert rejected.stdout == "" and "Invalid API key" in rejected.stderr.splitlines()

    # any other status lands in the generic APIError branch
    _, broke = _databases["sqlite"].account(balance_micros=0)
    refused = run(node_client("errors.mjs"), api_key=broke)
    assert refused.stdout == ""
    assert "API error: 403 - 403 Your account balance is depleted" in refused.stderr
    assert len(sent()) == 1  # neither error reached vLLM
