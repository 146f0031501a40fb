"""The proxied routes, one declarative entry each (the OpenAPI document reads them too)."""

from __future__ import annotations

from .. import schemas
from ..protocol import FREE, audio, chat, embeddings, messages, responses, scoring, tokenizer
from .inbound import ANTHROPIC, CREATES, FOLLOWS, Route

CHAT = Route("chat.completions", "/v1/chat/completions", schemas.CHAT, chat.COMPLETIONS)
COMPLETIONS = Route("completions", "/v1/completions", schemas.COMPLETION, chat.COMPLETIONS)
EMBEDDINGS = Route("embeddings", "/v1/embeddings", embeddings.SCHEMA, embeddings.EMBEDDINGS)

RESPONSES = Route(
    "responses", "/v1/responses", responses.SCHEMA, responses.RESPONSES, affinity=CREATES
)
RESPONSE_GET = Route(
    "responses.retrieve", "/v1/responses/{id}", None, FREE, method="GET", affinity=FOLLOWS
)
RESPONSE_DELETE = Route(
    "responses.delete", "/v1/responses/{id}", None, FREE, method="DELETE", affinity=FOLLOWS
)
RESPONSE_CANCEL = Route(
    "responses.cancel", "/v1/responses/{id}/cancel", None, FREE, affinity=FOLLOWS
)
RESPONSE_INPUT_ITEMS = Route(
    "responses.input_items",
    "/v1/responses/{id}/input_items",
    None,
    FREE,
    method="GET",
    affinity=FOLLOWS,
)

MESSAGES = Route("messages", "/v1/messages", messages.SCHEMA, messages.MESSAGES, family=ANTHROPIC)
COUNT_TOKENS = Route(
    "messages.count_tokens",
    "/v1/messages/count_tokens",
    messages.COUNT_SCHEMA,
    FREE,
    family=ANTHROPIC,
)

RERANK = Route("rerank", "/v1/rerank", scoring.RERANK_SCHEMA, scoring.SCORING)
RERANK_V2 = Route("rerank", "/v2/rerank", scoring.RERANK_SCHEMA, scoring.SCORING)
SCORE = Route("score", "/v1/score", scoring.SCORE_SCHEMA, scoring.SCORING)
TOKENIZE = Route("tokenize", "/tokenize", tokenizer.TOKENIZE_SCHEMA, FREE)
DETOKENIZE = Route("detokenize", "/detokenize", tokenizer.DETOKENIZE_SCHEMA, FREE)

TRANSCRIPTIONS = Route(
    "audio.transcriptions", "/v1/audio/transcriptions", audio.SCHEMA, audio.AUDIO, multipart=True
)
TRANSLATIONS = Route(
    "audio.translations", "/v1/audio/translations", audio.SCHEMA, audio.AUDIO, multipart=True
)
