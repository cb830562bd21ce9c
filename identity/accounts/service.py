"""Account use cases: register, verify, sign in, reset and change passwords.

Services take a database session and the runtime; they never read ``flask.request``. Every
outcome an attacker could observe is the same for an unknown email, a wrong password and an
unverified account (AUTH-12): the same result, and an argon2 verification either way.
"""

from __future__ import annotations

import unicodedata
import uuid
from dataclasses import dataclass
from datetime import timedelta

from email_validator import EmailNotValidError, validate_email
from flask import render_template
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from identity import audit
from identity.accounts import throttle
from identity.errors import InvalidInput
from identity.links import LinkError, fingerprint
from identity.models.base import utcnow
from identity.models.user import Invitation, Role, User
from identity.oauth.tokens import revoke_user_tokens
from identity.runtime import Runtime
from identity.sessions import service as login_sessions
from identity.tokens import token_hash

VERIFY = "verify-email"
RESET = "reset-password"
# A second reset or verification mail for the same account within this window is not
# sent (mail bombing, INPUT-14).
MAIL_INTERVAL = timedelta(seconds=60)


class PasswordRejected(InvalidInput):
    """The new password breaks the policy; the message says how."""


class InvalidEmail(InvalidInput):
    message = "Enter a valid email address."


class InvitationRequired(InvalidInput):
    message = "This invitation is invalid, used or expired."


class WrongPassword(InvalidInput):
    message = "The current password is not correct."


def normalize_email(raw: str) -> str:
    """One canonical form per mailbox (INPUT-11): IDNA domain, NFC, lower case."""
    # NFKC first: fullwidth and other compatibility forms of "alice@example.org" (U+FF41...)
    # would otherwise register a second, confusable account next to it.
    raw = unicodedata.normalize("NFKC", raw or "").strip()
    if not raw or len(raw) > 320:
        raise InvalidEmail()
    try:
        result = validate_email(raw, check_deliverability=False)
    except EmailNotValidError:
        raise InvalidEmail() from None
    return unicodedata.normalize("NFC", result.normalized).lower()


def clean_name(raw: str | None) -> str | None:
    if raw is None:
        return None
    name = "".join(ch for ch in raw if unicodedata.category(ch)[0] != "C").strip()
    return name[:200] or None


@dataclass(frozen=True)
class SignInResult:
    user: User | None
    reason: str  # "ok", "invalid_credentials", "throttled"
    retry_after: int = 0

    @property
    def ok(self) -> bool:
        return self.user is not None


class Accounts:
    def __init__(self, session: Session, rt: Runtime) -> None:
        self.session = session
        self.rt = rt
        self.settings = rt.settings

    # Registration ------------------------------------------------------------------

    def check_password(self, password: str, *context: str) -> None:
        problems = self.rt.password_policy.problems(password, context)
        if problems:
            raise PasswordRejected(problems[0])

    def find_invitation(self, token: str | None) -> Invitation | None:
        if not token or len(token) > 200:
            return None
        invitation = self.session.execute(
            select(Invitation).where(Invitation.token_hash == token_hash(token))
        ).scalar_one_or_none()
        if invitation is None or invitation.used_at or invitation.expires_at <= utcnow():
            return None
        return invitation

    def register(
        self,
        email: str,
        password: str,
        name: str | None = None,
        invitation_token: str | None = None,
    ) -> None:
        """Create an unverified account and mail a verification link.

        When the email already has an account nothing is created and the owner is mailed a
        note instead; the caller shows the same "check your inbox" page either way.
        """
        mode = self.settings.registration
        if mode == "closed":
            raise InvalidInput("Registration is closed.")
        email = normalize_email(email)
        name = clean_name(name)
        self.check_password(password, email.split("@")[0], name or "")
        # An invitation is required in invite mode; in open mode a valid one still counts,
        # so the role it carries is given (a stale one there is simply not used).
        invitation = self.find_invitation(invitation_token) if invitation_token else None
        if invitation is not None and invitation.email and invitation.email != email:
            invitation = None
        if mode == "invite" and invitation is None:
            raise InvitationRequired()

        existing = self._user_by_email(email)
        password_hash = self.rt.hasher.hash(password)  # same cost whether or not it is used
        if existing is not None:
            self._mail(existing, "account_exists")
            audit.record(
                self.session,
                "user.register",
                outcome="failure",
                subject_id=existing.id,
                reason="email_taken",
            )
            return

        user = User(email=email, name=name, password_hash=password_hash)
        self.session.add(user)
        try:
            self.session.flush()
        except IntegrityError:
            # A concurrent registration with the same email won the race (REL-17).
            self.session.rollback()
            return
        if invitation is not None:
            claimed = self.session.execute(
                update(Invitation)
                .where(Invitation.id == invitation.id, Invitation.used_at.is_(None))
                .values(used_at=utcnow(), used_by_id=user.id)
            ).rowcount  # type: ignore[attr-defined]
            if claimed != 1:
                self.session.rollback()
                raise InvitationRequired()
            if invitation.role is not None:
                user.roles.append(invitation.role)
        audit.record(
            self.session,
            "user.register",
            actor_id=user.id,
            subject_id=user.id,
            invited=invitation is not None,
        )
        self.send_verification(user)

    def create_user(
        self,
        email: str,
        password: str,
        *,
        roles: list[str] = (),  # type: ignore[assignment]
        verified: bool = False,
        name: str | None = None,
        actor_id: uuid.UUID | None = None,
    ) -> User:
        """Operator path (CLI): no mail, explicit errors."""
        email = normalize_email(email)
        self.check_password(password, email.split("@")[0], name or "")
        if self.session.execute(select(User.id).where(User.email == email)).first():
            raise InvalidInput(f"a user with email {email} already exists")
        user = User(
            email=email,
            name=clean_name(name),
            password_hash=self.rt.hasher.hash(password),
            email_verified_at=utcnow() if verified else None,
        )
        for role_name in roles:
            query = select(Role).where(Role.name == role_name)
            role = self.session.execute(query).scalar_one_or_none()
            if role is None:
                raise InvalidInput(f"unknown role: {role_name}")
            user.roles.append(role)
        self.session.add(user)
        self.session.flush()
        audit.record(
            self.session, "user.create", actor_id=actor_id, subject_id=user.id, roles=list(roles)
        )
        return user

    # Email verification ------------------------------------------------------------

    def _verify_state(self, user: User) -> tuple[object, ...]:
        return (VERIFY, str(user.id), user.email, user.email_verified_at is None)

    def send_verification(self, user: User) -> None:
        user.verification_sent_at = utcnow()
        token = self.rt.links.sign(VERIFY, str(user.id), self._verify_state(user))
        link = f"{self.settings.issuer}/verify-email/{token}"
        self._mail(user, "verify_email", link=link)

    def resend_verification(self, email: str) -> None:
        """Mail a new link when the account exists and is unverified; silent otherwise."""
        try:
            email = normalize_email(email)
        except InvalidEmail:
            return
        user = self._user_by_email(email)
        if user is None or user.is_verified or not user.is_active:
            return
        sent = user.verification_sent_at
        if sent is not None and utcnow() - sent < MAIL_INTERVAL:
            return  # one mail a minute per account, whatever the per-IP limits allow
        self.send_verification(user)

    def verify_email(self, token: str) -> User:
        lifetime = self.settings.verification_link_lifetime
        user = self._user_for_link(VERIFY, token, lifetime, self._verify_state)
        user.email_verified_at = user.updated_at = utcnow()
        audit.record(self.session, "user.email_verified", actor_id=user.id, subject_id=user.id)
        return user

    # Sign-in -----------------------------------------------------------------------

    def sign_in(self, email: str, password: str, device_cookie: str | None = None) -> SignInResult:
        try:
            email = normalize_email(email)
        except InvalidEmail:
            self.rt.hasher.burn(password[:100])
            return SignInResult(None, "invalid_credentials")
        if len(password) > self.settings.password_max_length:
            return self._failed(email, None, "password_too_long")

        # A browser that signed in to this account before is not held back by failures from
        # elsewhere (anti lock-out), but it has a counter of its own: before, its failures
        # were not counted at all, so a device cookie left on a shared computer allowed
        # unthrottled guessing of the account's (new) password.
        trusted = self.rt.device_cookie.vouches_for(device_cookie, email)
        counter = f"device:{token_hash(device_cookie)}" if trusted and device_cookie else email
        wait = throttle.wait_seconds(self.session, counter)
        if wait:
            audit.record(
                self.session, "user.sign_in", outcome="failure", reason="throttled", email=email
            )
            return SignInResult(None, "throttled", wait)

        user = self._user_by_email(email)
        if user is None:
            self.rt.hasher.burn(password)
            return self._failed(email, None, "unknown_user", counter)
        if not self.rt.hasher.verify(user.password_hash, password):
            return self._failed(email, user, "wrong_password", counter)
        if not user.is_active:
            return self._failed(email, user, "disabled", counter)
        if not user.is_verified:
            return self._failed(email, user, "unverified", counter)

        if self.rt.hasher.needs_rehash(user.password_hash):
            user.password_hash = self.rt.hasher.hash(password)
        user.last_sign_in_at = utcnow()
        throttle.clear(self.session, email)
        throttle.clear(self.session, counter)
        audit.record(
            self.session, "user.sign_in", actor_id=user.id, subject_id=user.id, amr=["pwd"]
        )
        return SignInResult(user, "ok")

    def _failed(
        self, email: str, user: User | None, reason: str, counter: str | None = None
    ) -> SignInResult:
        """Count the failure (on the account, or on a trusted device) and audit it."""
        throttle.register_failure(self.session, counter or email, self.rt.throttle_policy)
        audit.record(
            self.session,
            "user.sign_in",
            outcome="failure",
            subject_id=user.id if user else None,
            reason=reason,
            email=email,
        )
        return SignInResult(None, "invalid_credentials")

    # Password reset and change -----------------------------------------------------

    def _reset_state(self, user: User) -> tuple[object, ...]:
        requested = user.reset_requested_at.isoformat() if user.reset_requested_at else None
        return (RESET, str(user.id), user.password_hash, requested)

    def request_reset(self, email: str) -> None:
        """Mail a reset link when the account exists; the caller answers the same anyway."""
        try:
            email = normalize_email(email)
        except InvalidEmail:
            return
        user = self._user_by_email(email)
        if user is None or not user.is_active:
            audit.record(
                self.session,
                "user.password_reset_requested",
                outcome="failure",
                reason="unknown_user",
                email=email,
            )
            return
        now = utcnow()
        if user.reset_requested_at and now - user.reset_requested_at < MAIL_INTERVAL:
            return
        # Stamping the request time invalidates every older link (AUTH-16).
        user.reset_requested_at = now
        token = self.rt.links.sign(RESET, str(user.id), self._reset_state(user))
        link = f"{self.settings.issuer}/reset-password/{token}"
        self._mail(user, "reset_password", link=link)
        audit.record(self.session, "user.password_reset_requested", subject_id=user.id)

    def check_reset_link(self, token: str) -> User:
        lifetime = self.settings.reset_link_lifetime
        return self._user_for_link(RESET, token, lifetime, self._reset_state)

    def reset_password(self, token: str, new_password: str) -> User:
        user = self.check_reset_link(token)
        self.check_password(new_password, user.email.split("@")[0], user.name or "")
        self._set_password(user, new_password)
        user.reset_requested_at = None
        # The mailbox received the link, so it is proven to be the user's.
        if user.email_verified_at is None:
            user.email_verified_at = user.updated_at = utcnow()
        # Every session ends, including one an attacker may have held (SESS-05).
        login_sessions.end_all(self.session, user.id)
        # Refresh tokens and access tokens die with the old password (BCP-28).
        revoke_user_tokens(self.session, user.id, self.settings.access_token_lifetime)
        throttle.clear(self.session, user.email)
        audit.record(self.session, "user.password_reset", actor_id=user.id, subject_id=user.id)
        return user

    def change_password(self, user: User, current: str, new: str, keep_session: str | None) -> None:
        too_long = len(current) > self.settings.password_max_length
        if too_long or not self.rt.hasher.verify(user.password_hash, current):
            audit.record(
                self.session,
                "user.password_changed",
                outcome="failure",
                actor_id=user.id,
                subject_id=user.id,
                reason="wrong_password",
            )
            raise WrongPassword()
        self.check_password(new, user.email.split("@")[0], user.name or "")
        if new == current:
            raise PasswordRejected("The new password must differ from the current one.")
        self._set_password(user, new)
        login_sessions.end_all(self.session, user.id, keep=keep_session)
        revoke_user_tokens(self.session, user.id, self.settings.access_token_lifetime)
        audit.record(self.session, "user.password_changed", actor_id=user.id, subject_id=user.id)
        self._mail(user, "password_changed")

    def _set_password(self, user: User, password: str) -> None:
        user.password_hash = self.rt.hasher.hash(password)
        user.password_changed_at = utcnow()

    # Helpers -----------------------------------------------------------------------

    def _user_by_email(self, email: str) -> User | None:
        return self.session.execute(select(User).where(User.email == email)).scalar_one_or_none()

    def _user_for_link(self, purpose: str, token: str, max_age: int, state) -> User:  # type: ignore[no-untyped-def]
        user_id, fp = self.rt.links.load(purpose, token, max_age)
        try:
            user = self.session.get(User, uuid.UUID(user_id))
        except ValueError:
            raise LinkError() from None
        if user is None or not user.is_active or fingerprint(state(user)) != fp:
            raise LinkError()
        return user

    def _mail(self, user: User, template: str, **context: object) -> None:
        """Queue a mail to the user; it goes out only if this transaction commits."""
        context.setdefault("issuer", self.settings.issuer)
        subject = render_template(f"emails/{template}.subject.txt", user=user, **context).strip()
        body = render_template(f"emails/{template}.txt", user=user, **context)
        self.rt.mailer.send(self.session, user.email, subject, body, user_id=user.id)
