"""A user's login sessions: list them, end one or all (SESS-06).

A session is named by its public id (the OIDC ``sid``), never by its cookie or the
cookie's hash. Ending a session ends the grants bound to it, as signing out there would;
grants with offline_access survive (disable the user to end those too).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field

from identity.api import bp
from identity.api.auth import Caller
from identity.api.common import Output
from identity.api.operations import operation
from identity.api.users import get_user
from identity.extensions import db
from identity.rbac import service as rbac
from identity.rbac.permissions import Permission
from identity.runtime import runtime
from identity.sessions import policy
from identity.sessions import service as login_sessions


class SessionOut(Output):
    id: str = Field(description="The public session id (the sid claim of ID tokens).")
    created_at: datetime
    last_seen_at: datetime = Field(description="Last activity, to the minute.")
    expires_at: datetime = Field(description="The absolute timeout; idleness ends it sooner.")
    auth_time: datetime = Field(description="When the user last authenticated in it.")
    amr: list[str] = Field(description="How they authenticated (RFC 8176 values).")
    ip: str | None
    user_agent: str | None


class SessionList(Output):
    items: list[SessionOut]


@operation(
    bp,
    "GET",
    "/users/<uuid:user_id>/sessions",
    summary="List a user's sessions",
    tag="Sessions",
    permission=Permission.SESSIONS_READ,
    response=SessionList,
)
def list_sessions(caller: Caller, user_id: uuid.UUID) -> SessionList:
    """The user's live login sessions, newest first."""
    session = db.session()
    user = get_user(session, user_id)
    records = login_sessions.active_of(session, user.id, policy(runtime().settings))
    return SessionList(
        items=[
            SessionOut(
                id=r.sid,
                created_at=r.created_at,
                last_seen_at=r.last_seen_at,
                expires_at=r.expires_at,
                auth_time=r.auth_time,
                amr=list(r.amr or []),
                ip=r.ip,
                user_agent=r.user_agent,
            )
            for r in records
        ]
    )


def end_sessions(caller: Caller, user_id: uuid.UUID, sid: str | None) -> int:
    """End one session of the user (``sid``) or all of them (None), with their grants, as
    ``caller``; returns how many ended. What the API's DELETE operations, the console's
    sessions page and its "sign out everywhere" on a user's page do."""
    session = db.session()
    user = get_user(session, user_id)
    # Ending an administrator's sessions is acting on them: only who outranks them may.
    rbac.require_outranks(session, caller.principal, user.id)
    return login_sessions.revoke(
        session,
        user.id,
        sid,
        access_token_lifetime=runtime().settings.access_token_lifetime,
        actor_id=caller.user_id,
        client_id=caller.client_id,
    )


@operation(
    bp,
    "DELETE",
    "/users/<uuid:user_id>/sessions/<session_id>",
    summary="End a session",
    tag="Sessions",
    permission=Permission.SESSIONS_REVOKE,
    status=204,
)
def revoke_session(caller: Caller, user_id: uuid.UUID, session_id: str) -> None:
    """End one session of the user and the grants bound to it. A session of another user
    is not found (404)."""
    end_sessions(caller, user_id, session_id)


@operation(
    bp,
    "DELETE",
    "/users/<uuid:user_id>/sessions",
    summary="End all of a user's sessions",
    tag="Sessions",
    permission=Permission.SESSIONS_REVOKE,
    status=204,
)
def revoke_sessions(caller: Caller, user_id: uuid.UUID) -> None:
    """End every session of the user and the grants bound to them."""
    end_sessions(caller, user_id, None)
