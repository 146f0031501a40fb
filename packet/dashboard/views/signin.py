"""Sign-in, sign-out, the one-time welcome link (set a password) and password changes."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_login import login_required, login_user, logout_user

from ... import users
from .. import bp, services, throttle
from ..forms import ChangePasswordForm, ConfirmForm, SetPasswordForm, SignInForm
from ..session import SignedIn, signed_in

FAILED = "Incorrect email or password."


def _safe_next(target: str | None) -> str:
    """Only a path inside the dashboard: never another host (no open redirect)."""
    if target and target.startswith("/dashboard") and not target.startswith("//"):
        return target
    return url_for("dashboard.overview")


@bp.get("/login")
def login() -> ResponseReturnValue:
    """The sign-in form."""
    return render_template("dashboard/login.html", form=SignInForm())


@throttle.counting
def _refused(form: SignInForm) -> ResponseReturnValue:
    """A failed sign-in: counted against the email and the address (429 once over)."""
    form.form_errors.append(FAILED)
    services.audit("signin.failed", (form.email.data or "")[:254])
    return render_template("dashboard/login.html", form=form), 401


@bp.post("/login")
@throttle.guarded
def login_post() -> ResponseReturnValue:
    """Email and password → a session. Same answer for every kind of wrong credentials."""
    form = SignInForm()
    if not form.validate_on_submit():
        return render_template("dashboard/login.html", form=form), 400
    user = users.authenticate(form.email.data or "", form.password.data or "")
    if user is None:
        return _refused(form)
    session.clear()
    login_user(SignedIn(user))
    services.audit("signin", user)
    return redirect(_safe_next(request.args.get("next")))


@bp.post("/logout")
@login_required
def logout() -> ResponseReturnValue:
    """End the session (and its Playground key)."""
    previous = session.get("playground_key")
    if isinstance(previous, int):
        services.revoke_playground_key(signed_in().account, previous)
    services.audit("signout", signed_in().user)
    logout_user()
    session.clear()
    flash("Signed out.", "info")
    return redirect(url_for("dashboard.login"))


@bp.route("/welcome/<token>", methods=["GET", "POST"])
def welcome(token: str) -> ResponseReturnValue:
    """The one-time link from an invite or a reset: choose a password, then sign in."""
    user = users.pending(token)
    if user is None:
        return render_template("dashboard/link_spent.html"), 410
    form = SetPasswordForm()
    if request.method == "POST":
        if not form.validate_on_submit():
            return render_template("dashboard/welcome.html", form=form, email=user.email), 400
        if users.redeem(token, form.password.data or "") is None:
            return render_template("dashboard/link_spent.html"), 410
        services.audit("password.set", user)
        session.clear()
        flash("Password set. Sign in with it now.", "info")
        return redirect(url_for("dashboard.login"))
    return render_template("dashboard/welcome.html", form=form, email=user.email)


@bp.route("/password", methods=["GET", "POST"])
@login_required
def password() -> ResponseReturnValue:
    """Change the password: every session (this one too) ends."""
    form = ChangePasswordForm()
    if request.method == "POST":
        if not form.validate_on_submit():
            return render_template("dashboard/password.html", form=form), 400
        done = users.change_password(
            signed_in().user, form.current.data or "", form.password.data or ""
        )
        if done is None:
            form.current.errors = ["That is not your current password."]
            return render_template("dashboard/password.html", form=form), 400
        services.audit("password.change", done)
        logout_user()
        session.clear()
        flash("Password changed: sign in again with the new one.", "info")
        return redirect(url_for("dashboard.login"))
    return render_template("dashboard/password.html", form=form, signout=ConfirmForm())
