"""Account use cases: register, verify, sign in, reset and change passwords, change the
name and the email address.

Services take a database session and the runtime; they never read ``flask.request``. Every
outcome an attacker could observe is the same for an unknown email, a wrong password and an
unverified account (AUTH-12): the same result, and an argon2 verification either way.
"""

from __future__ import annotations

import unicodedata
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from identity import audit, erasure_requests
from identity.accounts import throttle
from identity.accounts.emails import InvalidEmail, normalize_email
from identity.errors import InvalidInput
from identity.links import LinkError, fingerprint
from identity.models.base import utcnow
from identity.models.user import Invitation, User, user_by_email
from identity.random_tokens import token_hash
from identity.rbac import service as rbac
from identity.revocation import revoke_user_tokens
from identity.runtime import Runtime
from identity.sessions import service as login_sessions
from identity.sessions.devices import describe

VERIFY = "verify-email"
RESET = "reset-password"
CHANGE_EMAIL = "change-email"
# A second reset or verification mail for the same account within this window is not
# sent (mail bombing, INPUT-14).
MAIL_INTERVAL = timedelta(seconds=60)
# Longer than any invitation token this server makes: refused before a lookup.
MAX_INVITATION_TOKEN_LENGTH = 200


class PasswordRejected(InvalidInput):
    """The new password breaks the policy; the message says how."""


class InvitationRequired(InvalidInput):
    message = "This invitation is invalid, used or expired."


class WrongPassword(InvalidInput):
    message = "The current password is not correct."


class SameEmail(InvalidInput):
    message = "That is already your email address."


class EmailTaken(InvalidInput):
    """Another account has the address: a conflict (409) for the admin API, and still an
    InvalidInput for the commands that report those."""

    status_code = 409
    code = "conflict"


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
        if not token or len(token) > MAX_INVITATION_TOKEN_LENGTH:
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

        existing = user_by_email(self.session, email)
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
                rbac.assign(self.session, invitation.role, rbac.Principal("user", user.id))
                self.session.expire(user, ["roles"])
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
        actor: rbac.Principal | None = None,
        client_id: str | None = None,
    ) -> User:
        """Operator path (CLI, admin API): no mail, explicit errors. ``actor``, the admin
        API's caller, can give only roles that hold nothing it does not hold (AUTHZ-05)."""
        email = normalize_email(email)
        self.check_password(password, email.split("@")[0], name or "")
        if user_by_email(self.session, email) is not None:
            raise EmailTaken(f"a user with email {email} already exists")
        user = User(
            email=email,
            name=clean_name(name),
            password_hash=self.rt.hasher.hash(password),
            email_verified_at=utcnow() if verified else None,
        )
        try:
            with self.session.begin_nested():
                self.session.add(user)
                self.session.flush()
        except IntegrityError:  # registered between the check and the flush
            raise EmailTaken(f"a user with email {email} already exists") from None
        rbac.give_roles(self.session, rbac.Principal("user", user.id), roles, actor=actor)
        self.session.expire(user, ["roles"])
        if actor_id is None and actor is not None and actor.kind == "user":
            actor_id = actor.id
        audit.record(
            self.session,
            "user.create",
            actor_id=actor_id,
            subject_id=user.id,
            client_id=client_id,
            roles=list(roles),
        )
        return user

    def set_password(self, user: User, password: str, *, actor_id: uuid.UUID | None = None) -> None:
        """Operator path (CLI): a new password without the current one, and no mail. Every
        session ends and every grant is revoked, as after a reset (SESS-05, BCP-28)."""
        self.check_password(password, user.email.split("@")[0], user.name or "")
        self._set_password(user, password)
        login_sessions.end_all(self.session, user.id)
        revoke_user_tokens(self.session, user.id, self.settings.access_token_lifetime)
        throttle.clear(self.session, user.email)
        audit.record(self.session, "user.password_set", actor_id=actor_id, subject_id=user.id)

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
        user = user_by_email(self.session, email)
        if user is None or user.is_verified or not user.is_active:
            return
        sent = user.verification_sent_at
        if sent is not None and utcnow() - sent < MAIL_INTERVAL:
            return  # one mail a minute per account, whatever the per-IP limits allow
        self.send_verification(user)

    def check_verification_link(self, token: str) -> bool:
        """True when the link can still verify its address; False when it was used (its
        account's address is verified already); LinkError when forged, expired, or its
        account is disabled."""
        lifetime = self.settings.verification_link_lifetime
        user, fp = self._link_user(VERIFY, token, lifetime)
        if fingerprint(self._verify_state(user)) == fp:
            return True
        if user.is_verified:
            return False
        raise LinkError()

    def verify_email(self, token: str) -> User:
        lifetime = self.settings.verification_link_lifetime
        user = self._user_for_link(VERIFY, token, lifetime, self._verify_state)
        user.email_verified_at = user.updated_at = utcnow()
        audit.record(self.session, "user.email_verified", actor_id=user.id, subject_id=user.id)
        return user

    # Sign-in -----------------------------------------------------------------------

    def sign_in(
        self,
        email: str,
        password: str,
        device_cookie: str | None = None,
        *,
        user_agent: str | None = None,
        ip: str | None = None,
    ) -> SignInResult:
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

        user = user_by_email(self.session, email)
        if user is None:
            self.rt.hasher.burn(password)
            return self._failed(email, None, "unknown_user", counter)
        if not self.rt.hasher.verify(user.password_hash, password):
            return self._failed(email, user, "wrong_password", counter)
        # Signing in again during the cooling-off period of one's own erasure request
        # calls it off (the password is proof enough: it was checked above).
        if not user.is_active and not erasure_requests.cancelled_by_sign_in(self.session, user):
            return self._failed(email, user, "disabled", counter)
        if not user.is_verified:
            return self._failed(email, user, "unverified", counter)

        if self.rt.hasher.needs_rehash(user.password_hash):
            user.password_hash = self.rt.hasher.hash(password)
        if not trusted and user.last_sign_in_at is not None:
            # The right password from a browser that never signed in to this account (the
            # first sign-in ever is no news): the owner hears of it, second step or not.
            browser, system = describe(user_agent)
            self._mail(user, "new_device", browser=browser, system=system, ip=ip or "unknown")
        user.last_sign_in_at = utcnow()
        user.inactivity_warned_at = None  # back: no erasure for inactivity
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
        user = user_by_email(self.session, email)
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

    # Name and email changes ------------------------------------------------------

    def change_name(self, user: User, name: str | None) -> bool:
        """Set (or with an empty value remove) the display name; False when unchanged."""
        name = clean_name(name)
        if name == user.name:
            return False
        user.name = name
        user.updated_at = utcnow()  # the name and preferred_username claims changed
        audit.record(self.session, "user.name_changed", actor_id=user.id, subject_id=user.id)
        return True

    def _email_change_state(self, user: User, new_email: str) -> tuple[object, ...]:
        # The stamp of the newest request kills older links; a password change or reset
        # (what the notice to the old address advises) kills them too.
        sent = user.verification_sent_at.isoformat() if user.verification_sent_at else None
        return (CHANGE_EMAIL, str(user.id), user.email, new_email, user.password_hash, sent)

    def request_email_change(self, user: User, current_password: str, new_email: str) -> str:
        """Mail a confirmation link to the new address and a notice to the current one;
        the address changes only when the link is opened. Returns the normalised new
        address. When another account has it, that account's owner is told instead and
        nothing else differs: the caller answers the same either way."""
        too_long = len(current_password) > self.settings.password_max_length
        if too_long or not self.rt.hasher.verify(user.password_hash, current_password):
            audit.record(
                self.session,
                "user.email_change_requested",
                outcome="failure",
                actor_id=user.id,
                subject_id=user.id,
                reason="wrong_password",
            )
            raise WrongPassword()
        new_email = normalize_email(new_email)
        if new_email == user.email:
            raise SameEmail()
        user.verification_sent_at = utcnow()
        owner = user_by_email(self.session, new_email)
        if owner is not None:
            self._mail(owner, "email_change_taken")
            audit.record(
                self.session,
                "user.email_change_requested",
                outcome="failure",
                actor_id=user.id,
                subject_id=user.id,
                reason="email_taken",
                new_email=new_email,
            )
        else:
            state = self._email_change_state(user, new_email)
            token = self.rt.links.sign(CHANGE_EMAIL, str(user.id), state, new_email)
            link = f"{self.settings.issuer}/account/email/confirm/{token}"
            self._mail(user, "email_change_confirm", to=new_email, link=link)
            audit.record(
                self.session,
                "user.email_change_requested",
                actor_id=user.id,
                subject_id=user.id,
                new_email=new_email,
            )
        self._mail(user, "email_change_requested", new_email=new_email)
        return new_email

    def check_email_change_link(self, user: User, token: str) -> tuple[str, bool]:
        """The new address a change link of ``user`` confirms, and whether the link can
        still change it (False: it did already). LinkError when the link is forged,
        expired, replaced by a newer one, or another account's."""
        lifetime = self.settings.verification_link_lifetime
        user_id, fp, new_email = self.rt.links.load_with_value(CHANGE_EMAIL, token, lifetime)
        if user_id != str(user.id) or new_email is None or not user.is_active:
            raise LinkError()
        if fingerprint(self._email_change_state(user, new_email)) == fp:
            return new_email, True
        if user.email == new_email:
            return new_email, False
        raise LinkError()

    def confirm_email_change(self, user: User, token: str) -> str:
        """Change the address to the one the link confirms (verified, since the link
        reached it). LinkError when the link does not work or the address was taken in the
        meantime."""
        new_email, usable = self.check_email_change_link(user, token)
        if not usable or user_by_email(self.session, new_email) is not None:
            raise LinkError()
        old_email = user.email
        user.email = new_email
        user.email_verified_at = user.updated_at = utcnow()
        try:
            self.session.flush()
        except IntegrityError:
            # Registered by someone else between the check and the flush.
            self.session.rollback()
            raise LinkError() from None
        audit.record(
            self.session,
            "user.email_changed",
            actor_id=user.id,
            subject_id=user.id,
            old_email=old_email,
            new_email=new_email,
        )
        return new_email

    def _set_password(self, user: User, password: str) -> None:
        user.password_hash = self.rt.hasher.hash(password)
        user.password_changed_at = utcnow()

    # Helpers -----------------------------------------------------------------------

    def _link_user(self, purpose: str, token: str, max_age: int) -> tuple[User, str]:
        """The active user a genuine, unexpired link names, and the state fingerprint it
        carries."""
        user_id, fp = self.rt.links.load(purpose, token, max_age)
        try:
            user = self.session.get(User, uuid.UUID(user_id))
        except ValueError:
            raise LinkError() from None
        if user is None or not user.is_active:
            raise LinkError()
        return user, fp

    def _user_for_link(self, purpose: str, token: str, max_age: int, state) -> User:  # type: ignore[no-untyped-def]
        user, fp = self._link_user(purpose, token, max_age)
        if fingerprint(state(user)) != fp:
            raise LinkError()
        return user

    def _mail(self, user: User, template: str, to: str | None = None, **context: object) -> None:
        """Queue a mail to the user (or, for an address being confirmed, to ``to``); it
        goes out only if this transaction commits."""
        context.setdefault("issuer", self.settings.issuer)
        self.rt.mailer.send_template(
            self.session, to or user.email, template, user_id=user.id, user=user, **context
        )
