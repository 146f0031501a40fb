"""Admission for one request, without Flask: count it, reserve its tokens (and, for a key
with a budget, its maximum cost), refuse it over any limit of its account's tier or its key."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .window import KeyLimit, TokenReservation, tier_figures

if TYPE_CHECKING:
    from ..auth import Principal
    from ..runtime import Runtime


def count(
    rt: Runtime, principal: Principal, estimate: int | None, hold: int = 0
) -> TokenReservation | None:
    """Count the caller's request and reserve ``estimate`` tokens and ``hold`` micro-dollars
    of its key's budget (None: storage down)."""
    figures = tier_figures(rt.settings, principal.tier)
    controls = principal.controls
    key = None
    if controls is not None and controls.limits_traffic:
        key = KeyLimit(principal.key_id, controls, hold)
    return rt.limits.admit(
        principal.account_id, rpm=figures["rpm"], tpm=figures["tpm"], estimate=estimate, key=key
    )


def refuse_over(rt: Runtime, principal: Principal, reservation: TokenReservation | None) -> None:
    """The 429 (403 for a key's spent budget) when the counted request went over a limit."""
    if reservation is not None and not reservation.admitted:
        figures = tier_figures(rt.settings, principal.tier)
        raise rt.limits.refusal(reservation, figures["rpm"], figures["tpm"], principal.controls)
