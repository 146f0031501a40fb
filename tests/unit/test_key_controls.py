"""A key's controls as pure values: periods, expiry, allow-list, tier bounds, messages."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from packet.errors import InsufficientQuota, InvalidAPIKey, ModelNotAllowed
from packet.key_controls import (
    KeyControls,
    check_expiry,
    check_model,
    check_tier_bounds,
    over_budget,
    parse_expiry,
    parse_models,
    period_end,
    period_of,
)


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("moment", "period", "end"),
    [
        ("2026-12-07T20:00:00", "2026-12", "2027-01-01T00:00:00"),
        ("2026-12-31T23:59:59", "2026-12", "2027-01-01T00:00:00"),
        ("2027-01-01T00:00:00", "2027-01", "2027-02-01T00:00:00"),
        ("2028-02-10T12:00:00", "2028-02", "2028-03-01T00:00:00"),  # a leap year's February
    ],
)
def test_a_monthly_budget_runs_by_calendar_month_in_utc(moment, period, end):
    assert period_of("month", ts(moment)) == period
    assert period_end("month", ts(moment)) == ts(end)


def test_a_total_budget_has_one_period_whose_counter_is_seeded_again_now_and_then():
    now = ts("2026-12-07T20:00:00")
    assert period_of("total", now) == "total"
    assert now < period_end("total", now) <= now + 31 * 86400


def test_spend_counts_only_in_its_own_period():
    controls = KeyControls(budget_micros=10, spent_micros=7, spent_period="2026-11")
    assert controls.spent_in("2026-11") == 7
    assert controls.spent_in("2026-12") == 0, "a new month starts from zero"


def test_only_rpm_tpm_or_a_budget_need_counters_of_their_own():
    assert not KeyControls(models=frozenset({"m"})).limits_traffic
    assert not KeyControls(expires_at=1.0).limits_traffic
    assert KeyControls(rpm=3).limits_traffic
    assert KeyControls(tpm=3).limits_traffic
    assert KeyControls(budget_micros=0).limits_traffic


def test_a_date_expires_at_the_end_of_that_day_a_time_at_that_time():
    assert parse_expiry("2027-01-31") == datetime(2027, 2, 1, tzinfo=UTC)
    assert parse_expiry("2027-01-31T12:30:00") == datetime(2027, 1, 31, 12, 30, tzinfo=UTC)
    assert parse_expiry("2027-01-31T12:30:00+02:00").utcoffset() is not None
    with pytest.raises(ValueError, match="not an ISO date"):
        parse_expiry("next tuesday")


def test_an_expired_key_is_a_401_that_says_so():
    controls = KeyControls(expires_at=ts("2027-02-01T00:00:00"))
    check_expiry(controls, ts("2027-01-31T23:59:59"), "pk_live_abcd")
    with pytest.raises(InvalidAPIKey, match=r"pk_live_abcd… expired at 2027-02-01 00:00 UTC"):
        check_expiry(controls, ts("2027-02-01T00:00:00"), "pk_live_abcd")


def test_models_outside_the_allow_list_are_refused_naming_the_allowed_ones():
    controls = KeyControls(models=parse_models("b-model, a-model"))
    check_model(controls, "a-model")
    check_model(controls, None)  # auto: checked once resolved
    check_model(None, "anything")
    check_model(KeyControls(rpm=1), "anything")  # no allow-list
    with pytest.raises(ModelNotAllowed) as refused:
        check_model(controls, "c-model")
    assert refused.value.code == 403
    assert refused.value.body()["error"] == {
        "message": "This API key may not use the model 'c-model'. Models allowed for this key: "
        "a-model, b-model.",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_allowed",
    }


def test_models_are_read_as_typed_or_as_stored():
    assert parse_models("a,b") == parse_models("a\nb") == frozenset({"a", "b"})
    assert parse_models("") is None and parse_models(None) is None and parse_models(" , ") is None


def test_a_key_cannot_be_looser_than_its_tier():
    figures = {"rpm": 60, "tpm": 1000}
    check_tier_bounds(figures, {"rpm": 60, "tpm": 1000, "budget_micros": 5})
    check_tier_bounds(figures, {"rpm": None})
    with pytest.raises(ValueError, match=r"rpm 61 is above the account's tier \(60\)"):
        check_tier_bounds(figures, {"rpm": 61})
    with pytest.raises(ValueError, match="tpm 1001"):
        check_tier_bounds(figures, {"tpm": 1001})


def test_a_spent_budget_is_insufficient_quota_naming_the_key_budget():
    error = over_budget(KeyControls(budget_micros=10_000, budget_period="month"), 10_250)
    assert isinstance(error, InsufficientQuota) and error.code == 403
    assert "budget of $0.01 this month (spent $0.01)" in error.message
    total = over_budget(KeyControls(budget_micros=2_500_000, budget_period="total"), 2_600_000)
    assert "$2.50 in total" in total.message
