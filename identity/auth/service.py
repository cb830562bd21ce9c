"""A user's second factors: what they have, adding and removing them, the second step.

Each change is audited and the user is told by mail (a factor added or removed, a recovery
code used), so a change they did not make does not go unnoticed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from identity import audit
from identity.auth import pending
from identity.auth.methods import PASSKEY, RECOVERY_CODE, TOTP, Method
from identity.auth.passkeys import Used
from identity.auth.totp import DIGITS, Check, Enrolment, Outcome
from identity.models.mfa import PendingAuthentication, WebAuthnCredential
from identity.models.user import User
from identity.runtime import Runtime

MAX_PASSWORD = 4096


class PolicyRefusal(Exception):
    """The change would leave the user without a factor that policy requires."""


@dataclass
class Overview:
    totp: bool
    recovery_codes_left: int
    passkeys: list[WebAuthnCredential] = field(default_factory=list)


class Factors:
    def __init__(self, session: Session, rt: Runtime) -> None:
        self.session = session
        self.rt = rt

    def overview(self, user: User) -> Overview:
        totp = self.rt.totp.confirmed(self.session, user) is not None
        left = self.rt.recovery_codes.remaining(self.session, user) if totp else 0
        return Overview(totp, left, self.rt.passkeys.of(self.session, user))

    def required_for(self, user: User) -> bool:
        """Whether policy requires this user to use a second factor: everyone's
        (``mfa_required``), or a role they hold (``mfa_required_roles``)."""
        settings = self.rt.settings
        if settings.mfa_required:
            return True
        roles = settings.mfa_roles
        if not roles:
            return False
        held = self.rt.rbac.get(self.session).role_names("user", user.id)
        return not roles.isdisjoint(held)

    def has_second_factor(self, user: User) -> bool:
        return self.has_totp(user) or self.has_passkey(user)

    def has_totp(self, user: User) -> bool:
        return self.rt.totp.confirmed(self.session, user) is not None

    def has_passkey(self, user: User) -> bool:
        return bool(self.rt.passkeys.of(self.session, user))

    def password_is(self, user: User, password: str) -> bool:
        """Re-authentication for a sensitive change."""
        if len(password) > MAX_PASSWORD:
            return False
        return self.rt.hasher.verify(user.password_hash, password)

    def reauthenticate(self, user: User, answer: str) -> bool:
        """A fresh proof before a sensitive action (the admin console's erase, retire,
        rotate, grant admin): a code from the user's authenticator app, used up like one at
        sign-in, or else their password, taken as typed. A wrong answer is audited."""
        code = answer.strip()
        if len(code) == DIGITS and code.isascii() and code.isdigit() and self.has_totp(user):
            ok = self.rt.totp.verify(self.session, user, code).outcome is Outcome.OK
        else:
            ok = self.password_is(user, answer)
        if not ok:
            audit.record(
                self.session, "user.reauthentication", outcome="failure", subject_id=user.id
            )
        return ok

    # Authenticator app -----------------------------------------------------------------

    def begin_totp(self, user: User) -> Enrolment:
        return self.rt.totp.begin(self.session, user)

    def confirm_totp(self, user: User, code: str) -> list[str] | None:
        """Count the app from now on; returns a first set of recovery codes (shown once),
        or None when the code is not the app's current one."""
        if not self.rt.totp.confirm(self.session, user, code):
            audit.record(
                self.session, "mfa.totp_enrolment_failed", outcome="failure", subject_id=user.id
            )
            return None
        codes = self.rt.recovery_codes.generate(self.session, user)
        audit.record(self.session, "mfa.totp_enrolled", actor_id=user.id, subject_id=user.id)
        self._mail(user, "factor_added", method=TOTP.label)
        return codes

    def remove_totp(self, user: User, *, actor: User | None = None) -> bool:
        """Remove the app and the recovery codes with it; ``actor``: an admin doing it."""
        if actor is None and self.required_for(user) and not self.has_passkey(user):
            raise PolicyRefusal("A second factor is required here: set up another one first.")
        removed = self.rt.totp.remove(self.session, user)
        self.rt.recovery_codes.remove(self.session, user)
        # Sign-ins waiting for the removed factor start over.
        pending.end_for_user(self.session, user)
        if removed:
            actor_id = (actor or user).id
            audit.record(self.session, "mfa.totp_removed", actor_id=actor_id, subject_id=user.id)
            self._mail(user, "factor_removed", method=TOTP.label)
        return removed

    def reset(
        self, user: User, *, actor_id: uuid.UUID | None, client_id: str | None = None
    ) -> bool:
        """An operator removes every factor of a user who lost them (whatever the policy:
        where one is required, the user sets up a new one at the next sign-in). The user is
        told by mail. Returns whether there was anything to remove."""
        had = self.rt.totp.remove(self.session, user)
        self.rt.recovery_codes.remove(self.session, user)
        for credential in self.rt.passkeys.of(self.session, user):
            self.rt.passkeys.remove(self.session, credential)
            had = True
        pending.end_for_user(self.session, user)
        audit.record(
            self.session,
            "mfa.factors_reset",
            actor_id=actor_id,
            subject_id=user.id,
            client_id=client_id,
            removed=had,
        )
        if had:
            self._mail(user, "factors_reset")
        return had

    # Passkeys ---------------------------------------------------------------------------

    def add_passkey(self, user: User, answer: str, challenge: str, name: str) -> None:
        credential = self.rt.passkeys.register(self.session, user, answer, challenge, name)
        audit.record(
            self.session,
            "mfa.passkey_added",
            actor_id=user.id,
            subject_id=user.id,
            credential=str(credential.id),
        )
        self._mail(user, "factor_added", method=f"{PASSKEY.label} \u201c{credential.name}\u201d")

    def remove_passkey(self, user: User, credential: WebAuthnCredential) -> None:
        others = [c for c in self.rt.passkeys.of(self.session, user) if c.id != credential.id]
        if self.required_for(user) and not others and not self.has_totp(user):
            raise PolicyRefusal("A second factor is required here: set up another one first.")
        self.rt.passkeys.remove(self.session, credential)
        pending.end_for_user(self.session, user)
        audit.record(
            self.session,
            "mfa.passkey_removed",
            actor_id=user.id,
            subject_id=user.id,
            credential=str(credential.id),
        )
        self._mail(user, "factor_removed", method=f"{PASSKEY.label} \u201c{credential.name}\u201d")

    def regenerate_recovery_codes(self, user: User) -> list[str] | None:
        if not self.has_totp(user):
            return None
        codes = self.rt.recovery_codes.generate(self.session, user)
        audit.record(
            self.session, "mfa.recovery_codes_generated", actor_id=user.id, subject_id=user.id
        )
        return codes

    # The second step of a sign-in --------------------------------------------------------

    def verify_totp(self, record: PendingAuthentication, user: User, code: str) -> Check:
        check = self.rt.totp.verify(self.session, user, code)
        self._audit_step(user, TOTP, check.outcome)
        return check

    def use_recovery_code(self, record: PendingAuthentication, user: User, code: str) -> bool:
        used = self.rt.recovery_codes.use(self.session, user, code)
        self._audit_step(user, RECOVERY_CODE, Outcome.OK if used else Outcome.WRONG)
        if used:
            left = self.rt.recovery_codes.remaining(self.session, user)
            self._mail(user, "recovery_code_used", left=left)
        return used

    def audit_passkey(self, user: User | None, used: Used | None) -> None:
        """A passkey answer at sign-in: ``used`` None when it did not check out (``user``
        None: a passkey sign-in whose owner is not known)."""
        audit.record(
            self.session,
            "user.passkey",
            outcome="success" if used is not None else "failure",
            actor_id=user.id if user else None,
            subject_id=user.id if user else None,
            method=PASSKEY.name,
            credential=str(used.credential.id) if used else None,
        )

    def _audit_step(self, user: User, method: Method, outcome: Outcome) -> None:
        audit.record(
            self.session,
            "user.second_factor",
            outcome="success" if outcome == Outcome.OK else "failure",
            actor_id=user.id,
            subject_id=user.id,
            method=method.name,
            reason=None if outcome == Outcome.OK else str(outcome),
        )

    def _mail(self, user: User, template: str, **context: object) -> None:
        self.rt.mailer.send_template(
            self.session,
            user.email,
            template,
            user_id=user.id,
            user=user,
            issuer=self.rt.settings.issuer,
            **context,
        )
