"""marshmallow schemas for the admin API's bodies and query strings.

Unlike the public API (which lets vLLM's extra fields through), admin input is closed: an
unknown field is a 400 naming it, so a typo never silently does nothing. Money is dollars
(a JSON number or a decimal string) turned into integer micro-dollars exactly as the CLI does.
"""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from .key_controls import PERIODS, parse_expiry
from .money import MICROS_PER_DOLLAR, NotAnAmount, dollars_to_micros
from .reports import parse_time
from .schemas import StrictBool
from .upstream.client import validate_base_url

MAX_PAGE = 200
_MAX_DOLLARS = 10**9
_NAME = validate.Regexp(
    r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}\Z",
    error="Use 1-100 letters, digits, '.', '_', '@' or '-', starting with a letter or digit.",
)


class Text(fields.String):
    """A string without control characters (PostgreSQL cannot store NUL; none belongs in a
    name, label, model id or key)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if any(ord(c) < 32 or ord(c) == 127 for c in text):
            raise ValidationError("Must not contain control characters.")
        return text


class Dollars(fields.Field[int]):
    """A dollar amount (``25``, ``"0.50"``) loaded as integer micro-dollars."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValidationError('Must be an amount of dollars, e.g. 25 or "0.50".')
        try:
            micros = dollars_to_micros(value)
        except NotAnAmount:
            raise ValidationError('Must be an amount of dollars, e.g. 25 or "0.50".') from None
        if abs(micros) > _MAX_DOLLARS * MICROS_PER_DOLLAR:
            raise ValidationError(f"Must be between -{_MAX_DOLLARS} and {_MAX_DOLLARS} dollars.")
        return micros


class EndpointURL(Text):
    """vLLM's base URL, normalised (``…/v1`` suffix dropped); plain http(s) only."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return validate_base_url(text)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


class Time(Text):
    """An ISO 8601 date or time; UTC when it has no zone."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        try:
            return parse_time(super()._deserialize(value, attr, data, **kwargs))
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


class _Closed(Schema):
    class Meta:
        unknown = RAISE


class AccountCreate(_Closed):
    name = Text(required=True, validate=_NAME)
    tier = Text(validate=validate.Length(min=1, max=50))
    balance = Dollars(load_default=0)
    default_model = Text(allow_none=True, validate=validate.Length(min=1, max=200))


class AccountUpdate(_Closed):
    tier = Text(validate=validate.Length(min=1, max=50))
    default_model = Text(allow_none=True, validate=validate.Length(min=1, max=200))
    cache_default = StrictBool()

    @validates_schema
    def _not_empty(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not data:
            raise ValidationError("Give 'tier', 'default_model' and/or 'cache_default'.", "tier")


class Credit(_Closed):
    amount = Dollars(required=True)
    reason = Text(validate=validate.Length(min=1, max=200))


class InviteCreate(_Closed):
    email = fields.Email(required=True, validate=validate.Length(max=254))
    role = fields.String(load_default="member", validate=validate.OneOf(["owner", "member"]))


class Expiry(Text):
    """A key's expiry: a date (valid through that day, UTC) or an ISO time."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        try:
            return parse_expiry(super()._deserialize(value, attr, data, **kwargs))
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


class KeyUpdate(_Closed):
    """A key's label and controls; ``null`` clears one (see packet.key_controls)."""

    label = Text(allow_none=True, validate=validate.Length(max=100))
    rpm = fields.Integer(
        strict=True, allow_none=True, validate=validate.Range(min=1, max=2**31 - 1)
    )
    tpm = fields.Integer(
        strict=True, allow_none=True, validate=validate.Range(min=1, max=2**31 - 1)
    )
    budget = Dollars(allow_none=True, validate=validate.Range(min=0))
    budget_period = Text(validate=validate.OneOf(PERIODS))
    models = fields.List(
        Text(validate=validate.Length(min=1, max=200)),
        allow_none=True,
        validate=validate.Length(max=100),
    )
    expires_at = Expiry(allow_none=True)


class KeyCreate(KeyUpdate):
    pass


class EndpointCreate(_Closed):
    url = EndpointURL(required=True, validate=validate.Length(min=1, max=500))
    upstream_key = Text(allow_none=True, validate=validate.Length(min=1, max=500))


class Page(_Closed):
    """``?limit=&offset=``: offset pagination for accounts, keys and endpoints."""

    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=MAX_PAGE))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0))


class UsageQuery(_Closed):
    since = Time()
    until = Time()
    model = Text(validate=validate.Length(min=1, max=200))
    key_id = fields.Integer(validate=validate.Range(min=1))


class RecordsQuery(_Closed):
    """``?after=&limit=``: cursor pagination (the last id seen) for usage records."""

    since = Time()
    until = Time()
    after = fields.Integer(load_default=0, validate=validate.Range(min=0))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=MAX_PAGE))
