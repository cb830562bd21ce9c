"""Operator actions on accounts: creating, inviting, mailing, profile changes, disabling
and deleting (the `identity users ...` commands, the admin API and the admin console).

``actor`` is who asks: None for the operator at the `identity` command, who may do
anything; otherwise the admin API's or the console's caller, who may act only on users
who hold no permission the caller lacks (identity.rbac.service.require_outranks).
Whoever asks, the last active administrator can be neither disabled nor deleted
(AUTHZ-08)."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from identity import audit, erasure_requests
from identity.accounts.emails import normalize_email
from identity.accounts.service import Accounts, clean_name
from identity.exceptions import Conflict, NotFound
from identity.models.base import utcnow
from identity.models.user import Invitation, User, roles_by_names, user_by_email
from identity.random_tokens import new_token, token_hash
from identity.rbac import service as rbac
from identity.rbac.store import load_snapshot
from identity.revocation import revoke_user_tokens
from identity.sessions import service as login_sessions

if TYPE_CHECKING:
    from identity.runtime import Runtime


def find_user(session: Session, email: str) -> User:
    """The account of an email address (in any spelling of it), or NotFound."""
    address = normalize_email(email)
    user = user_by_email(session, address)
    if user is None:
        raise NotFound(f"no user with email {address}")
    return user


def _actor_user(actor: rbac.Principal | None) -> uuid.UUID | None:
    return actor.id if actor is not None and actor.kind == "user" else None


def create_user(
    session: Session,
    rt: Runtime,
    email: str,
    password: str | None,
    *,
    roles: list[str] | tuple[str, ...] = (),
    verified: bool = False,
    name: str | None = None,
    actor: rbac.Principal | None = None,
    client_id: str | None = None,
) -> User:
    """An operator's new account (the admin API, the console). Without a password it gets
    an unusable random one and the user is mailed the password reset link, with which
    they choose theirs. ``actor`` gives only roles holding nothing it does not hold."""
    accounts = Accounts(session, rt)
    user = accounts.create_user(
        email,
        password if password is not None else secrets.token_urlsafe(32),
        roles=list(roles),
        verified=verified,
        name=name,
        actor=actor,
        client_id=client_id,
    )
    if password is None:
        accounts.request_reset(user.email)
    return user


def _mailable(session: Session, user: User, actor: rbac.Principal | None) -> None:
    rbac.require_outranks(session, actor, user.id)
    if not user.is_active:
        raise Conflict(f"{user.email} is disabled: enable them first.")


def send_verification(
    session: Session, rt: Runtime, user: User, *, actor: rbac.Principal | None = None
) -> None:
    """Mail the user a new verification link, as an operator asks (one a minute at most).
    Refused for a user holding more than ``actor``, a disabled account (Conflict) and an
    address verified already (Conflict)."""
    _mailable(session, user, actor)
    if user.is_verified:
        raise Conflict(f"{user.email} is verified already.")
    Accounts(session, rt).resend_verification(user.email)


def send_password_reset(
    session: Session, rt: Runtime, user: User, *, actor: rbac.Principal | None = None
) -> None:
    """Mail the user a password reset link, as an operator asks (one a minute at most).
    Refused for a user holding more than ``actor`` and a disabled account (Conflict)."""
    _mailable(session, user, actor)
    Accounts(session, rt).request_reset(user.email)


def set_disabled(
    session: Session,
    user: User,
    disabled: bool,
    *,
    access_token_lifetime: int,
    actor_id: uuid.UUID | None = None,
    actor: rbac.Principal | None = None,
    client_id: str | None = None,
) -> None:
    """Disable or re-enable an account. Disabling ends every session and every grant at
    once: cookies, refresh tokens and access tokens all stop working (SESS-04). The last
    active administrator cannot be disabled (AUTHZ-08)."""
    rbac.require_outranks(session, actor, user.id)
    if disabled:
        with session.begin_nested():  # undone alone when refused: the session stays usable
            user.disabled_at = user.disabled_at or utcnow()
            if rbac.is_admin(session, user.id):
                rbac.ensure_admin_remains(session)
        login_sessions.end_all(session, user.id)
        revoke_user_tokens(session, user.id, access_token_lifetime)
        erasure_requests.disabled_by_someone_else(session, user.id)
    else:
        user.disabled_at = None
    event = "user.disabled" if disabled else "user.enabled"
    audit.record(
        session,
        event,
        actor_id=actor_id or _actor_user(actor),
        subject_id=user.id,
        client_id=client_id,
    )


UNCHANGED = object()  # update_user: leave the name as it is


def update_user(
    session: Session,
    user: User,
    *,
    name: str | object | None = UNCHANGED,
    email: str | None = None,
    email_verified: bool | None = None,
    actor: rbac.Principal | None = None,
    client_id: str | None = None,
) -> list[str]:
    """An operator's change of the name (None or "" removes it), the email address and
    whether it is verified; returns the fields that changed.

    The address changes at once, without the confirmation mail a user's own change needs:
    the operator vouches for it. It counts as unverified unless ``email_verified`` is given
    too (an unverified account cannot sign in until the new address is verified). An
    address another account has is a Conflict."""
    rbac.require_outranks(session, actor, user.id)
    was_verified = user.is_verified
    changed: dict[str, object] = {}
    if name is not UNCHANGED:
        cleaned = clean_name(name if isinstance(name, str) else None)
        if cleaned != user.name:
            user.name = cleaned
            changed["name"] = True
    if email is not None:
        address = normalize_email(email)
        if address != user.email:
            if user_by_email(session, address) is not None:
                raise Conflict(f"a user with email {address} already exists")
            # That it changed, not the addresses: audit data is also logged (no personal
            # data in logs beyond ids).
            changed["email"] = True
            user.email = address
            user.email_verified_at = None
            try:
                with session.begin_nested():
                    session.flush()
            except IntegrityError:  # taken between the check and the flush
                raise Conflict(f"a user with email {address} already exists") from None
    if email_verified is not None and email_verified != user.is_verified:
        user.email_verified_at = utcnow() if email_verified else None
    if user.is_verified != was_verified:
        changed["email_verified"] = user.is_verified
    if changed:
        user.updated_at = utcnow()  # the profile claims changed
        session.flush()
        audit.record(
            session,
            "user.updated",
            actor_id=_actor_user(actor),
            subject_id=user.id,
            client_id=client_id,
            changed=changed,
        )
    return sorted(changed)


def create_invitation(
    session: Session,
    rt: Runtime,
    *,
    email: str | None = None,
    role: str | None = None,
    lifetime: int | None = None,
    actor: rbac.Principal | None = None,
    now: datetime | None = None,
    send_mail: bool = False,
) -> str:
    """Create a single-use invitation and return its link (the token is shown only here).
    ``send_mail``: also mail the link to ``email`` (the console does; the CLI prints it).

    Giving a role through an invitation is giving the role: ``actor`` may give only a
    role holding nothing it does not hold; whether it may give roles at all
    (roles:assign) its caller checks, as for any permission."""
    now = now or utcnow()
    actor_id = _actor_user(actor)
    role_row = None
    if role is not None:
        (role_row,) = roles_by_names(session, [role])
        snapshot = load_snapshot(session)
        rbac.require_holds(session, actor, snapshot.role_grants(role_row.id), snapshot=snapshot)
    token = new_token()
    invitation = Invitation(
        token_hash=token_hash(token),
        email=normalize_email(email) if email else None,
        role=role_row,
        created_by_id=actor_id,
        created_at=now,
        expires_at=now + timedelta(seconds=lifetime or rt.settings.invitation_lifetime),
    )
    session.add(invitation)
    session.flush()
    audit.record(session, "invitation.create", actor_id=actor_id, email=invitation.email, role=role)
    link = f"{rt.settings.issuer}/register?invite={token}"
    if send_mail and invitation.email:
        rt.mailer.send_template(
            session,
            invitation.email,
            "invitation",
            link=link,
            issuer=rt.settings.issuer,
            expires_at=invitation.expires_at,
        )
    return link
