"""The request schemas: every documented parameter, valid and invalid; extras pass through."""

import pytest
from marshmallow import ValidationError
from marshmallow import fields as mm_fields

from packet.schemas import CHAT, COMPLETION, MessageSchema, errors_for, first_error

MSG = [{"role": "user", "content": "Hello!"}]


def chat_error(**fields):
    body = {"messages": MSG} | fields
    errors = CHAT.validate(body)
    assert errors_for(CHAT, body) == errors  # the request path's fast validation agrees
    return first_error(errors) if errors else None


def completion_error(**fields):
    body = {"prompt": "Hi"} | fields
    errors = COMPLETION.validate(body)
    assert errors_for(COMPLETION, body) == errors
    return first_error(errors) if errors else None


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"model": "auto"},
        {"model": None},
        {"max_tokens": 1},
        {"max_tokens": 100, "temperature": 0.7},
        {"temperature": 0},
        {"temperature": 2},
        {"top_p": 0},
        {"top_p": 1},
        {"frequency_penalty": -2, "presence_penalty": 2},
        {"stream": True},
        {"stream": False},
        {"stream": True, "stream_options": {"include_usage": True}},
        {"stop": "\n"},
        {"stop": ["a", "b", "c", "d"]},
        {"stop": None},
        {"n": 2, "seed": 7, "user": "u1"},
        {"max_completion_tokens": 50},
        {"logprobs": True, "top_logprobs": 5},
        {"response_format": {"type": "json_object"}},
        {"logit_bias": {"50256": -100}},
        {"top_k": 40, "min_p": 0.05, "repetition_penalty": 1.1, "ignore_eos": True},
        {
            "tools": [
                {
                    "type": "function",
                    "function": {"name": "get_weather", "parameters": {"type": "object"}},
                }
            ],
            "tool_choice": "auto",
        },
        {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
    ],
)
def test_chat_accepts(fields):
    assert chat_error(**fields) is None


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": "0.5"}, "temperature"),
        ({"temperature": True}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_p": -1}, "top_p"),
        ({"frequency_penalty": 2.1}, "frequency_penalty"),
        ({"presence_penalty": -3}, "presence_penalty"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": "10"}, "max_tokens"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"stream": "yes"}, "stream"),
        ({"stream": 1}, "stream"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": 5}, "stop"),
        ({"stop": ["a", 1]}, "stop"),
        ({"n": 0}, "n"),
        ({"model": 5}, "model"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        (
            {"stream": True, "stream_options": {"include_usage": "yes"}},
            "stream_options.include_usage",
        ),
        ({"tools": [{"type": "function", "function": {}}]}, "tools[0].function.name"),
        ({"tools": [{"type": "retrieval"}]}, "tools[0].type"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"top_logprobs": 21}, "top_logprobs"),
        ({"logit_bias": {"1": 200}}, "logit_bias"),
    ],
)
def test_chat_rejects(fields, param):
    found = chat_error(**fields)
    assert found is not None
    assert found[0].startswith(param)


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([], "messages"),
        ("hello", "messages"),
        ([{"content": "no role"}], "messages[0].role"),
        ([{"role": "wizard", "content": "x"}], "messages[0].role"),
        ([{"role": "user"}], "messages[0].content"),
        ([{"role": "user", "content": 5}], "messages[0].content"),
        ([{"role": "user", "content": [{"text": "no type"}]}], "messages[0].content[0]"),
        ([{"role": "user", "content": [{"type": "text"}]}], "messages[0].content[0]"),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}],
            "messages[0].content[0]",
        ),
        ([{"role": "tool", "content": "42"}], "messages[0].tool_call_id"),
        (
            [
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "c1", "type": "function"}],
                }
            ],
            "messages[0].tool_calls[0].function",
        ),
        ([MSG[0], "not an object"], "messages[1]"),
    ],
)
def test_messages_rejected(messages, param):
    errors = CHAT.validate({"messages": messages})
    assert errors_for(CHAT, {"messages": messages}) == errors
    assert errors
    assert first_error(errors)[0] == param


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "system", "content": "You are a helpful assistant."}, *MSG],
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
                ],
            }
        ],
        [
            MSG[0],
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
        ],
        [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": "hi", "name": "ann"},
        ],
    ],
)
def test_messages_accepted(messages):
    assert not CHAT.validate({"messages": messages})


@pytest.mark.parametrize("prompt", ["Hello", ["a", "b"], [1, 2, 3], [[1, 2], [3]]])
def test_completion_prompts_accepted(prompt):
    assert not COMPLETION.validate({"prompt": prompt})


@pytest.mark.parametrize("prompt", [None, 5, [], [1, "a"], {"text": "x"}])
def test_completion_prompts_rejected(prompt):
    errors = COMPLETION.validate({"prompt": prompt})
    assert first_error(errors)[0] == "prompt"


def test_completion_requires_prompt():
    assert first_error(COMPLETION.validate({}))[0] == "prompt"
    assert first_error(errors_for(COMPLETION, {"max_tokens": 0}))[0] in ("max_tokens", "prompt")
    assert "prompt" in errors_for(COMPLETION, {"max_tokens": 0})


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": 3}, "temperature"),
        ({"logprobs": 6.5}, "logprobs"),
        ({"echo": "true"}, "echo"),
        ({"best_of": 0}, "best_of"),
    ],
)
def test_completion_rejects(fields, param):
    assert completion_error(**fields)[0] == param


def test_unknown_fields_kept_in_loaded_data():
    loaded = CHAT.load({"messages": MSG, "top_k": 5, "guided_json": {"type": "object"}})
    assert loaded["top_k"] == 5
    assert loaded["guided_json"] == {"type": "object"}
    nested = CHAT.load({"messages": [{"role": "user", "content": "x", "extra": 1}]})
    assert nested["messages"][0]["extra"] == 1


# --- the plain-message fast path must agree with the nested schema ----------------------------

_NESTED = mm_fields.List(mm_fields.Nested(MessageSchema))
TOOL_CALL = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
_VARIANTS = [
    {"role": "user", "content": "hi"},
    {"role": "assistant", "content": "hi", "name": "bot", "extra": [1, {"x": None}]},
    {"role": "tool", "content": "42", "tool_call_id": "call_1"},
    {"role": "tool", "content": "42"},
    {"role": "tool", "content": "42", "tool_call_id": ""},
    {"role": "wizard", "content": "hi"},
    {"role": ["user"], "content": "hi"},
    {"role": None, "content": "hi"},
    {"content": "no role"},
    {"role": "user"},
    {"role": "user", "content": None},
    {"role": "user", "content": 5},
    {"role": "user", "content": [{"type": "text", "text": "part"}]},
    {"role": "user", "content": "hi", "name": 3},
    {"role": "user", "content": "hi", "tool_call_id": False},
    {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]},
    {"role": "assistant", "content": "hi", "tool_calls": "nope"},
    "not an object",
    None,
]


@pytest.mark.parametrize("message", _VARIANTS, ids=range(len(_VARIANTS)))
def test_fast_path_agrees_with_the_nested_schema(message):
    for messages in ([message], [{"role": "user", "content": "ok"}, message]):
        body = {"messages": messages}
        expected = {} if not _nested_errors(messages) else {"messages": _nested_errors(messages)}
        assert CHAT.validate(body) == expected
        assert errors_for(CHAT, body) == expected
        if not expected:
            assert CHAT.load(body)["messages"] == _NESTED.deserialize(messages)


def _nested_errors(messages):
    try:
        _NESTED.deserialize(messages)
    except ValidationError as error:
        return error.messages
    return None
