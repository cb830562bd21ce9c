"""Account forms. Flask-WTF adds the CSRF token to each."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, Length

# Generous caps that stop megabyte inputs before any hashing (AUTH-06); the password policy
# applies the configured limits with a readable message.
EMAIL = [DataRequired(), Length(max=320)]
PASSWORD = [DataRequired(), Length(max=4096)]


class SignInForm(FlaskForm):
    email = EmailField("Email", validators=EMAIL, render_kw={"autocomplete": "username"})
    password = PasswordField(
        "Password", validators=PASSWORD, render_kw={"autocomplete": "current-password"}
    )
    next = HiddenField()


class RegisterForm(FlaskForm):
    email = EmailField("Email", validators=EMAIL, render_kw={"autocomplete": "email"})
    name = StringField(
        "Name (optional)", validators=[Length(max=200)], render_kw={"autocomplete": "name"}
    )
    password = PasswordField(
        "Password", validators=PASSWORD, render_kw={"autocomplete": "new-password"}
    )
    invite = HiddenField()


class EmailForm(FlaskForm):
    email = EmailField("Email", validators=EMAIL, render_kw={"autocomplete": "email"})


class ResetPasswordForm(FlaskForm):
    password = PasswordField(
        "New password", validators=PASSWORD, render_kw={"autocomplete": "new-password"}
    )


class ChangePasswordForm(FlaskForm):
    current_password = PasswordField(
        "Current password", validators=PASSWORD, render_kw={"autocomplete": "current-password"}
    )
    new_password = PasswordField(
        "New password", validators=PASSWORD, render_kw={"autocomplete": "new-password"}
    )


class ConfirmForm(FlaskForm):
    """A bare CSRF-protected button (sign-out, verify email)."""


class NameForm(FlaskForm):
    name = StringField("Name", validators=[Length(max=200)], render_kw={"autocomplete": "name"})


class ChangeEmailForm(FlaskForm):
    new_email = EmailField("New email", validators=EMAIL, render_kw={"autocomplete": "email"})
    current_password = PasswordField(
        "Current password", validators=PASSWORD, render_kw={"autocomplete": "current-password"}
    )


# A code from an authenticator app, or a recovery code ("abcde-23456"); spaces are ignored.
CODE = [DataRequired(), Length(max=32)]


class CodeForm(FlaskForm):
    code = StringField(
        "Code",
        validators=CODE,
        render_kw={"autocomplete": "one-time-code", "inputmode": "numeric", "spellcheck": "false"},
    )
    next = HiddenField()


class RecoveryCodeForm(FlaskForm):
    code = StringField(
        "Recovery code",
        validators=CODE,
        render_kw={"autocomplete": "off", "autocapitalize": "none", "spellcheck": "false"},
    )
    next = HiddenField()


class EnrolTotpForm(FlaskForm):
    code = StringField(
        "Code from the app",
        validators=CODE,
        render_kw={"autocomplete": "one-time-code", "inputmode": "numeric", "spellcheck": "false"},
    )


class PasswordConfirmForm(FlaskForm):
    """A sensitive change confirmed with the current password."""

    current_password = PasswordField(
        "Current password", validators=PASSWORD, render_kw={"autocomplete": "current-password"}
    )


class RenameForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=100)])
