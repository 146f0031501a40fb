"""Admission for one request, without Flask: count it, reserve its tokens, refuse it (429)
over either limit of its account's tier."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .window import TokenReservation, tier_figures

if TYPE_CHECKING:
    from ..auth import Principal
    from ..runtime import Runtime


def count(rt: Runtime, principal: Principal, estimate: int | None) -> TokenReservation | None:
    """Count the caller's request and reserve ``estimate`` tokens (None: storage down)."""
    figures = tier_figures(rt.settings, principal.tier)
    return rt.limits.admit(
        principal.account_id, rpm=figures["rpm"], tpm=figures["tpm"], estimate=estimate
    )


def refuse_over(rt: Runtime, principal: Principal, reservation: TokenReservation | None) -> None:
    """The 429 when the counted request went over either limit."""
    if reservation is not None and not reservation.admitted:
        figures = tier_figures(rt.settings, principal.tier)
        raise rt.limits.refusal(reservation, figures["rpm"], figures["tpm"])
