"""Erasing a person (GDPR Art. 17).

``request`` schedules an erasure after the cooling-off period: the account is disabled at
once (its sessions end, its grants are revoked), and signing in again, or the link in the
confirmation mail, cancels it (``cancel``). ``erase`` does it: every client the person used
that registered a ``security_event_uri`` is told (RISC account-purged, queued here and
delivered by ``identity.oauth.security_events``), as are those that registered a
back-channel logout URI; the audit trail keeps its records with the person taken out
(``audit.erase_personal_data``); the account and everything that hangs off it go (ON DELETE
CASCADE); a ledger row without personal data remembers it; the person gets a last mail
with the receipt id. All in the caller's transaction: it happens entirely or not at all,
and erasing an account that is gone already is refused, not repeated.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from identity import audit, erasure_requests
from identity.erasure_requests import pending
from identity.links import LinkError, fingerprint
from identity.models.base import utcnow
from identity.models.oauth import AuthorizationCode, Client, Consent, RefreshToken, TokenRevocation
from identity.models.privacy import ERASURE, ErasureRecord, PrivacyJob, SecurityEvent
from identity.models.user import Invitation, User
from identity.rbac import service as rbac
from identity.revocation import queue_backchannel_logouts, revoke_user_tokens
from identity.sessions import service as login_sessions

if TYPE_CHECKING:
    from identity.runtime import Runtime

ACCOUNT_PURGED = "https://schemas.openid.net/secevent/risc/event-type/account-purged"
CANCEL = "erasure-cancel"  # the purpose of the cancel link in the confirmation mail


@dataclass(frozen=True)
class Receipt:
    receipt_id: str
    erased_at: datetime
    clients_told: int


def subject_hash(secret_key: str, user_id: uuid.UUID) -> str:
    """The ledger's name for an erased account: an HMAC of its id, naming no one."""
    return hmac.new(secret_key.encode(), f"erased:{user_id}".encode(), hashlib.sha256).hexdigest()


class Erasure:
    def __init__(self, session: Session, rt: Runtime) -> None:
        self.session = session
        self.rt = rt
        self.settings = rt.settings

    # Scheduling --------------------------------------------------------------------

    def request(
        self,
        user: User,
        *,
        by_operator: bool = False,
        requested_by: uuid.UUID | None = None,
        reason: str | None = None,
        actor: rbac.Principal | None = None,
    ) -> PrivacyJob:
        """Schedule the erasure after the cooling-off period: the person's own request, or
        an operator's (``by_operator``; ``requested_by`` their account, if any). Asking
        again changes nothing."""
        rbac.require_outranks(self.session, actor, user.id)
        self.session.refresh(user, with_for_update=True)  # one request at a time per user
        found = pending(self.session, user.id)
        if found is not None:
            return found
        was_active = user.disabled_at is None
        self._refuse_last_admin(user)
        days = self.settings.gdpr_cooling_off_days
        job = PrivacyJob(
            kind=ERASURE,
            user_id=user.id,
            by_operator=by_operator,
            requested_by=requested_by,
            reason=reason,
            run_after=utcnow() + timedelta(days=days),
            disabled_account=was_active,
            attempts=0,
        )
        self.session.add(job)
        user.disabled_at = user.disabled_at or utcnow()
        login_sessions.end_all(self.session, user.id)
        revoke_user_tokens(self.session, user.id, self.settings.access_token_lifetime)
        audit.record(
            self.session,
            "gdpr.erasure_requested",
            actor_id=requested_by or (None if by_operator else user.id),
            subject_id=user.id,
            cooling_off_days=days,
            requested="operator" if by_operator else "self",
        )
        self.session.flush()  # the job's id, which the cancel link is bound to
        link = None
        if not by_operator:  # an operator's request is the operator's to call off
            token = self.rt.links.sign(CANCEL, str(user.id), self._cancel_state(job))
            link = f"{self.settings.issuer}/account/delete/cancel/{token}"
        self.rt.mailer.send_template(
            self.session,
            user.email,
            "erasure_requested",
            user_id=user.id,
            issuer=self.settings.issuer,
            erase_on=job.run_after,
            link=link,
        )
        return job

    def cancel(self, user: User, *, actor_id: uuid.UUID | None = None) -> bool:
        """Call off the scheduled erasure (identity.erasure_requests.cancel)."""
        return erasure_requests.cancel(self.session, user, actor_id=actor_id)

    def cancel_by_link(self, token: str) -> User:
        """The confirmation mail's cancel link: valid while that request is pending."""
        user_id, fp = self.rt.links.load(
            CANCEL, token, self.settings.gdpr_cooling_off_days * 86400 + 3600
        )
        try:
            user = self.session.get(User, uuid.UUID(user_id))
        except ValueError:
            raise LinkError() from None
        job = pending(self.session, user.id) if user is not None else None
        if user is None or job is None or job.by_operator:
            raise LinkError()
        if fingerprint(self._cancel_state(job)) != fp:
            raise LinkError()
        self.cancel(user)
        return user

    @staticmethod
    def _cancel_state(job: PrivacyJob) -> tuple[str, str]:
        return (str(job.id), job.run_after.isoformat())

    # Erasing -----------------------------------------------------------------------

    def erase(
        self,
        user: User,
        *,
        by_operator: bool = True,
        requested_by: uuid.UUID | None = None,
        reason: str | None = None,
        actor: rbac.Principal | None = None,
        client_id: str | None = None,
    ) -> Receipt:
        """Erase the account now (see the module docstring): asked by an operator (the
        user ``requested_by``, a service account as ``actor``, or the command line), or by
        the person. The last active administrator cannot be erased (AUTHZ-08)."""
        rbac.require_outranks(self.session, actor, user.id)
        now = utcnow()
        receipt_id = secrets.token_hex(16)
        email, user_id = user.email, user.id
        requested = "operator" if by_operator else "self"
        queue_backchannel_logouts(self.session, user_id=user_id)
        told = self._tell_clients(user_id)
        # No subject: the receipt is also in the ledger, whose keyed hash of the id must
        # not lead back to the pseudonym of the person's other records.
        audit.record(
            self.session,
            "gdpr.erased",
            actor_id=requested_by,
            client_id=client_id,
            receipt=receipt_id,
            requested=requested,
            reason=(reason or "")[:200] or None,
            clients_told=told,
        )
        self._remove(user)
        self.session.add(
            ErasureRecord(
                receipt_id=receipt_id,
                subject_hash=subject_hash(self.rt.secret_key, user_id),
                erased_at=now,
                requested=requested,
            )
        )
        # The last mail belongs to no account (the outbox row would go with it).
        self.rt.mailer.send_template(
            self.session, email, "erased", issuer=self.settings.issuer, receipt=receipt_id
        )
        self.session.flush()
        return Receipt(receipt_id, now, told)

    def reapply(self) -> list[str]:
        """After a restore from an older backup: erase again every account the ledger says
        was erased (no mail, no events: the person and the clients were told then).
        Returns the receipt ids."""
        ledger = {
            row.subject_hash: row.receipt_id
            for row in self.session.execute(select(ErasureRecord)).scalars()
        }
        done = []
        for user in list(self.session.execute(select(User)).scalars()) if ledger else []:
            receipt = ledger.get(subject_hash(self.rt.secret_key, user.id))
            if receipt is not None:
                audit.record(self.session, "gdpr.erasure_reapplied", receipt=receipt)
                self._remove(user)
                done.append(receipt)
        self.session.flush()
        return done

    def _remove(self, user: User) -> None:
        """What every erasure does: the person out of the audit trail, then the account
        and everything that cascades from it."""
        self._refuse_last_admin(user)
        login_sessions.end_all(self.session, user.id)
        audit.erase_personal_data(self.session, user.id, user.email)
        # Invitations name the person by address: the one they used, and any still open.
        self.session.execute(
            delete(Invitation).where(
                or_(Invitation.used_by_id == user.id, Invitation.email == user.email)
            )
        )
        # Tokens of an account that is gone are refused anyway: no revocation names it.
        self.session.execute(delete(TokenRevocation).where(TokenRevocation.key == f"sub:{user.id}"))
        self.session.delete(user)
        self.session.flush()

    def _refuse_last_admin(self, user: User) -> None:
        """Conflict when the user is the last active administrator (AUTHZ-08): counted as
        gone already, as they are once this transaction commits."""
        if rbac.is_admin(self.session, user.id):
            with self.session.begin_nested():  # undone alone when refused
                user.disabled_at = user.disabled_at or utcnow()
                rbac.ensure_admin_remains(self.session)

    def _tell_clients(self, user_id: uuid.UUID) -> int:
        """Queue the account-purged event for each client the person consented to or held
        a grant at, that registered where to receive it."""
        used = {
            *self.session.execute(
                select(Consent.client_pk).where(Consent.user_id == user_id)
            ).scalars(),
            *self.session.execute(
                select(RefreshToken.client_pk).where(RefreshToken.user_id == user_id)
            ).scalars(),
            *self.session.execute(
                select(AuthorizationCode.client_pk).where(AuthorizationCode.user_id == user_id)
            ).scalars(),
        }
        if not used:
            return 0
        clients = self.session.execute(select(Client).where(Client.id.in_(used))).scalars()
        listening = [c for c in clients if c.meta.get("security_event_uri")]
        for client in sorted(listening, key=lambda c: c.client_id):
            self.session.add(
                SecurityEvent(
                    client_pk=client.id, event=ACCOUNT_PURGED, subject=str(user_id), attempts=0
                )
            )
        return len(listening)
