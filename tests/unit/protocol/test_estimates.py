"""Each family's estimate: the prompt billed when the upstream reports none is counted from
the texts, not the body; where it cannot be (a stored response's context), the estimate."""

from __future__ import annotations

from packet.protocol import messages, responses
from packet.usage import MESSAGE_TOKENS


def estimate(wire, body: dict) -> object:
    return wire.estimate(body, 10_000, 4096, 16)


def test_a_response_input_is_counted_from_its_texts():
    body = {"model": "m" * 50, "input": "12345678", "instructions": "1234"}
    assert estimate(responses.RESPONSES, body).billed_prompt == 2 * MESSAGE_TOKENS + 3
    items = {"input": [{"role": "user", "content": [{"type": "input_text", "text": "1234"}]}]}
    assert estimate(responses.RESPONSES, items).billed_prompt == MESSAGE_TOKENS + 1


def test_a_response_that_continues_another_bills_the_estimate():
    body = {"input": "hi", "previous_response_id": "resp_1"}
    made = estimate(responses.RESPONSES, body)
    assert made.billed_prompt == made.prompt == 10_000 // 4 + 1


def test_anthropic_messages_count_the_system_prompt_too():
    body = {
        "max_tokens": 5,
        "system": [{"type": "text", "text": "12345678"}],
        "messages": [{"role": "user", "content": "1234"}],
    }
    assert estimate(messages.MESSAGES, body).billed_prompt == 2 * MESSAGE_TOKENS + 3


def test_the_count_never_exceeds_the_estimate_the_money_was_held_for():
    body = {"input": "x" * 100_000}
    assert estimate(responses.RESPONSES, body).billed_prompt == 10_000 // 4 + 1
