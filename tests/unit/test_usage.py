"""Token estimates and the checks on upstream-reported usage, including properties over any
report an upstream could send."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from packet import usage

ASSUMED = 131072


@pytest.mark.parametrize(
    ("body", "context", "cap"),
    [
        ({"max_tokens": 50}, 4096, 50),
        ({"max_completion_tokens": 70, "max_tokens": 50}, 4096, 70),
        ({"max_tokens": 50, "n": 3}, 4096, 150),
        ({"max_tokens": 10, "n": 2, "best_of": 5}, 4096, 50),
        ({}, 4096, 4096),  # vLLM's default: up to the context length
        ({"n": 2}, 8192, 16384),
        ({"max_tokens": 10**12}, 4096, 4096),  # never past the context length
        ({"max_tokens": 10, "prompt": ["a", "b", "c"]}, 4096, 30),  # each prompt completes
        ({"max_tokens": 10, "prompt": [[1, 2], [3]]}, 4096, 20),
        ({"max_tokens": 10, "prompt": [1, 2, 3]}, 4096, 10),  # one prompt of token ids
    ],
)
def test_completion_cap_is_the_most_the_upstream_can_generate(body, context, cap):
    assert usage.completion_cap(body, context) == cap


@pytest.mark.parametrize(
    ("card", "context"),
    [
        ({"max_model_len": 8192}, 8192),
        ({}, ASSUMED),  # llama.cpp, Ollama: the card does not say
        (None, ASSUMED),
        ({"max_model_len": "8192"}, ASSUMED),
        ({"max_model_len": -1}, ASSUMED),
        ({"max_model_len": True}, ASSUMED),
        ({"max_model_len": 10**15}, ASSUMED),  # the card is the upstream's word too
    ],
)
def test_context_length_from_the_model_card(card, context):
    assert usage.context_length(card, ASSUMED) == context


def test_reservation_is_one_choice_bounded_by_the_context():
    assert usage.reservation({"max_tokens": 100, "n": 4}, 10, 4096, 1024) == 110
    assert usage.reservation({}, 10, 4096, 1024) == 1034
    assert usage.reservation({}, 10, 512, 1024) == 522
    assert usage.reservation({"max_tokens": 2**31 - 1}, 10, 4096, 1024) == 4106


LIMITS = usage.Bounds(prompt=1000, completion=200)


def test_a_plausible_report_is_believed():
    report = {"prompt_tokens": 12, "completion_tokens": 34, "total_tokens": 46}
    used = usage.checked(report, LIMITS, counted_prompt=99, counted_completion=9)
    assert used == usage.Usage(12, 34, usage.UPSTREAM) and used.total == 46


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        (None, (50, 7)),  # no usage at all: counted
        ("abc", (50, 7)),
        ({"prompt_tokens": "abc", "completion_tokens": 3}, (50, 3)),
        ({"prompt_tokens": -1_000_000_000, "completion_tokens": 3}, (50, 3)),
        ({"prompt_tokens": 5, "completion_tokens": -5}, (5, 7)),
        ({"prompt_tokens": 5.0, "completion_tokens": 3}, (50, 3)),
        ({"prompt_tokens": True, "completion_tokens": 3}, (50, 3)),
        ({"prompt_tokens": 10**30, "completion_tokens": 3}, (50, 3)),
        ({"prompt_tokens": 5, "completion_tokens": 201}, (5, 7)),  # more than it could make
        ({"prompt_tokens": 5}, (5, 7)),
    ],
)
def test_an_implausible_report_falls_back_to_counting(report, expected):
    used = usage.checked(report, LIMITS, counted_prompt=50, counted_completion=7)
    assert (used.prompt, used.completion) == expected
    assert used.source == usage.COUNTED


def test_a_stream_report_below_the_relayed_tokens_is_not_believed():
    report = {"prompt_tokens": 5, "completion_tokens": 0}
    used = usage.checked(report, LIMITS, counted_prompt=50, counted_completion=30, floor=30)
    assert (used.prompt, used.completion, used.source) == (5, 30, usage.COUNTED)


def test_counting_a_json_answer():
    answer = {
        "choices": [
            {"message": {"content": "x" * 10, "tool_calls": [{"function": {"arguments": "yy"}}]}},
            {"text": "z" * 4},
            "junk",
        ]
    }
    assert usage.count_answer(answer) == 3 + 1  # ceil(12 / 4) + 4 / 4
    assert usage.count_answer({"choices": "nope"}) == 0
    assert usage.count_answer([1, 2]) == 0


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
REPORTS = JSON | st.fixed_dictionaries(
    {},
    optional={
        "prompt_tokens": JSON | st.integers(min_value=-(2**70), max_value=2**70),
        "completion_tokens": JSON | st.integers(min_value=-(2**70), max_value=2**70),
    },
)


@given(
    report=REPORTS,
    prompt_bound=st.integers(min_value=0, max_value=2**40),
    completion_bound=st.integers(min_value=0, max_value=2**40),
    counted_prompt=st.integers(min_value=0, max_value=2**41),
    counted_completion=st.integers(min_value=0, max_value=2**41),
)
def test_any_report_bills_nonnegative_bounded_integers(
    report, prompt_bound, completion_bound, counted_prompt, counted_completion
):
    limits = usage.Bounds(prompt_bound, completion_bound)
    used = usage.checked(
        report,
        limits,
        counted_prompt=counted_prompt,
        counted_completion=counted_completion,
        floor=counted_completion,
    )
    for value, bound in ((used.prompt, prompt_bound), (used.completion, completion_bound)):
        assert type(value) is int and 0 <= value <= bound
    if used.source == usage.UPSTREAM:
        assert (used.prompt, used.completion) == (
            report["prompt_tokens"],
            report["completion_tokens"],
        )


@given(
    body=st.fixed_dictionaries(
        {},
        optional={
            "max_tokens": st.integers(min_value=1, max_value=2**31 - 1),
            "n": st.integers(min_value=1, max_value=128),
            "best_of": st.integers(min_value=1, max_value=128),
            "prompt": st.lists(st.text(max_size=3), min_size=1, max_size=50),
        },
    ),
    context=st.integers(min_value=1, max_value=2**31 - 1),
    body_bytes=st.integers(min_value=0, max_value=8 * 2**20),
)
def test_holds_and_reservations_stay_within_64_bits(body, context, body_bytes):
    prompt = usage.prompt_estimate(body_bytes)
    assert 0 < usage.reservation(body, prompt, context, 1024) < 2**40
    cap = usage.completion_cap(body, context)
    assert 0 < cap <= context * 128 * 50 < 2**63
    limits = usage.bounds(body, body_bytes, context)
    assert limits.completion == cap and limits.prompt >= min(body_bytes, context)


def test_the_counted_prompt_reads_the_texts_not_the_body():
    chat = {
        "model": "a-long-model-name",
        "stream_options": {"include_usage": True},
        "messages": [
            {"role": "user", "content": "12345678"},
            {"role": "user", "content": [{"type": "text", "text": "1234"}, {"type": "image"}]},
        ],
    }
    assert usage.count_prompt(chat) == 2 * usage.MESSAGE_TOKENS + 3
    assert usage.count_prompt({"prompt": "12345678"}) == 2
    assert usage.count_prompt({"prompt": [[1, 2, 3], "1234"]}) == 4
    assert usage.count_prompt({"prompt": [5, 6]}) == 2
    assert usage.count_prompt({}) == 1
