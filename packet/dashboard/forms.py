"""The dashboard's forms (Flask-WTF: every one carries the session's CSRF token)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import DateField, EmailField, PasswordField, SelectField, StringField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length, Optional

from ..users import MAX_PASSWORD, MIN_PASSWORD


class SignInForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=MAX_PASSWORD)])
    submit = SubmitField("Sign in")


class SetPasswordForm(FlaskForm):
    password = PasswordField(
        "New password",
        validators=[DataRequired(), Length(min=MIN_PASSWORD, max=MAX_PASSWORD)],
        description=f"At least {MIN_PASSWORD} characters.",
    )
    confirm = PasswordField(
        "Repeat the password",
        validators=[DataRequired(), EqualTo("password", message="The passwords differ.")],
    )
    submit = SubmitField("Set password")


class ChangePasswordForm(SetPasswordForm):
    current = PasswordField("Current password", validators=[DataRequired()])
    submit = SubmitField("Change password")


class KeyForm(FlaskForm):
    """A new key and its own controls, all optional (see packet.key_controls)."""

    label = StringField(
        "Label", validators=[Optional(), Length(max=100)], description="To recognise the key by."
    )
    rpm = StringField(
        "Requests per minute",
        validators=[Optional(), Length(max=12)],
        description="Empty: the account's. At most the tier's.",
    )
    tpm = StringField(
        "Tokens per minute",
        validators=[Optional(), Length(max=12)],
        description="Empty: the account's. At most the tier's.",
    )
    budget = StringField(
        "Budget in dollars",
        validators=[Optional(), Length(max=20)],
        description="A spend cap for this key. Empty: none.",
    )
    budget_period = SelectField(
        "Budget period",
        choices=[("month", "per calendar month (UTC)"), ("total", "in total")],
        default="month",
    )
    models = StringField(
        "Allowed models",
        validators=[Optional(), Length(max=2000)],
        description="Model ids, comma-separated. Empty: every model.",
    )
    expires = DateField(
        "Expires after", validators=[Optional()], description="Valid through that day (UTC)."
    )
    submit = SubmitField("Create key")

    def controls(self) -> dict[str, str | None]:
        """The controls as typed, for packet.key_controls.read_controls."""
        return {
            "rpm": self.rpm.data,
            "tpm": self.tpm.data,
            "budget": self.budget.data,
            "budget_period": self.budget_period.data if self.budget.data else None,
            "models": self.models.data,
            "expires": self.expires.data.isoformat() if self.expires.data else None,
        }


class EndpointForm(FlaskForm):
    url = StringField(
        "Base URL",
        validators=[DataRequired(), Length(max=500)],
        description="vLLM's base URL, e.g. http://10.0.0.5:8000",
    )
    upstream_key = PasswordField(
        "Upstream API key",
        validators=[Optional(), Length(max=500)],
        description="Only if vLLM was started with --api-key.",
    )
    submit = SubmitField("Add endpoint")


class ConfirmForm(FlaskForm):
    """A button that changes something (sign out, revoke, remove): a POST with its token."""

    submit = SubmitField("Confirm")


class RangeForm(FlaskForm):
    """The usage page's date range (a GET form: no CSRF token, it changes nothing)."""

    class Meta:
        csrf = False

    start = DateField("From", validators=[Optional()])
    end = DateField("To", validators=[Optional()])
