"""The dashboard's forms (Flask-WTF: every one carries the session's CSRF token)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import DateField, EmailField, PasswordField, StringField, SubmitField
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
    label = StringField(
        "Label", validators=[Optional(), Length(max=100)], description="To recognise the key by."
    )
    submit = SubmitField("Create key")


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
