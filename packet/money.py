"""Money: integer micro-dollars everywhere (no float touches a balance), dollars only at the
edges (the CLI, the admin API, configuration), and what a request costs at a price."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import Settings

MICROS_PER_DOLLAR = 1_000_000
TOKENS_PER_PRICE = 1_000_000  # prices are micro-dollars per million tokens


class NotAnAmount(ValueError):
    """A dollar amount that cannot be read."""


@dataclass(frozen=True)
class Price:
    """Price of one million tokens, in micro-dollars, for input and output."""

    input_per_million: int
    output_per_million: int


def dollars_to_micros(value: str | float | int) -> int:
    """Parse a dollar amount such as ``"25"`` or ``"0.50"`` into integer micro-dollars."""
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise NotAnAmount(f"not an amount of dollars: {value!r}") from exc
    if not amount.is_finite():
        raise NotAnAmount(f"not an amount of dollars: {value!r}")
    return int((amount * MICROS_PER_DOLLAR).to_integral_value())


def cost_micros(settings: Settings, model: str, prompt_tokens: int, completion_tokens: int) -> int:
    """Cost of a request in micro-dollars, rounded up to the next micro-dollar."""
    price = settings.price_for(model)
    numerator = (
        prompt_tokens * price.input_per_million + completion_tokens * price.output_per_million
    )
    return -(-numerator // TOKENS_PER_PRICE)


def discounted(cost: int, share_ppm: int) -> int:
    """``share_ppm`` millionths of ``cost`` (a batch line's price), rounded up."""
    return -(-cost * share_ppm // 1_000_000)
