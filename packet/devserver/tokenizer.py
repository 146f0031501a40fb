"""vLLM's ``/tokenize`` and ``/detokenize`` (also under ``/v1``), with the simulator's
one-word-per-token tokenizer: a known word is its index in ``tokens.WORDS``, any other a
hash of it; a chat adds ``CHAT_TEMPLATE_TOKENS`` ids per message, as the counters do.
Nothing is generated: the records have no tokens.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Any

from packet.devserver import tokens
from packet.devserver.protocol import respond
from packet.devserver.request import (
    MODEL,
    Check,
    an_object,
    check_fields,
    check_messages,
    invalid,
    is_int,
    read_json,
    served_model,
)

if TYPE_CHECKING:
    from packet.devserver.app import Handler, Simulator

VOCABULARY = 32000
TEMPLATE_IDS = [VOCABULARY - 3, VOCABULARY - 2, VOCABULARY - 1][: tokens.CHAT_TEMPLATE_TOKENS]
FIELDS: dict[str, Check] = {"model": MODEL}


def tokenize(app: Simulator, environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """A ``prompt`` string, or chat ``messages``, as ids."""
    body = an_object(read_json(environ))
    check_fields(body, FIELDS, "")
    model = served_model(body, app.settings)
    if "messages" in body:
        check_messages(body["messages"])
        ids = [
            i
            for message in body["messages"] or []
            for i in TEMPLATE_IDS + _ids(_text(message.get("content")))
        ]
    else:
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            invalid("prompt", "Input should be a valid string")
        ids = _ids(prompt)
    app.record(environ, body, model=model, finished=True)
    answer = {
        "count": len(ids),
        "max_model_len": app.settings.max_model_len,
        "tokens": ids,
        "token_strs": None,
    }
    return respond(start_response, 200, answer)


def detokenize(app: Simulator, environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Ids back to words: a known word's id is that word, another id a placeholder."""
    body = an_object(read_json(environ))
    check_fields(body, FIELDS, "")
    model = served_model(body, app.settings)
    ids = body.get("tokens")
    if not isinstance(ids, list) or not all(is_int(i) and 0 <= i < VOCABULARY for i in ids):
        invalid("tokens", f"Input should be a list of token ids below {VOCABULARY}")
    app.record(environ, body, model=model, finished=True)
    words = [tokens.WORDS[i] if i < len(tokens.WORDS) else f"<{i}>" for i in ids]
    return respond(start_response, 200, {"prompt": " ".join(words)})


def word_id(word: str) -> int:
    """A word's id: its place among the simulator's words, else a hash in the vocabulary."""
    if word in tokens.WORDS:
        return tokens.WORDS.index(word)
    return len(tokens.WORDS) + zlib.crc32(word.encode()) % (VOCABULARY - 3 - len(tokens.WORDS))


def _ids(text: str) -> list[int]:
    return [word_id(word) for word in text.split()]


def _text(content: str | list[dict[str, Any]] | None) -> str:
    if isinstance(content, list):
        return " ".join(part.get("text") or "" for part in content)
    return content or ""


ROUTES: dict[tuple[str, str], Handler] = {
    ("POST", "/tokenize"): tokenize,
    ("POST", "/v1/tokenize"): tokenize,
    ("POST", "/detokenize"): detokenize,
    ("POST", "/v1/detokenize"): detokenize,
}
