"""A user's second factors, for operators: see them, and reset them when the user lost
them (AUTH-30). Resetting is acting on the user: only who outranks them may (AUTHZ-02)."""

from __future__ import annotations

import uuid

from pydantic import Field

from identity.api import bp
from identity.api.auth import Caller
from identity.api.common import Output
from identity.api.operations import operation
from identity.api.users import get_user
from identity.auth.service import Factors
from identity.extensions import db
from identity.rbac import service as rbac
from identity.rbac.permissions import Permission
from identity.runtime import runtime


class FactorsOut(Output):
    totp: bool = Field(description="Whether an authenticator app is set up (and confirmed).")
    recovery_codes_left: int = Field(description="Unused recovery codes (0 without an app).")


@operation(
    bp,
    "GET",
    "/users/<uuid:user_id>/factors",
    summary="Read a user's second factors",
    tag="Users",
    permission=Permission.USERS_READ,
    response=FactorsOut,
)
def read_factors(caller: Caller, user_id: uuid.UUID) -> FactorsOut:
    session = db.session()
    overview = Factors(session, runtime()).overview(get_user(session, user_id))
    return FactorsOut(totp=overview.totp, recovery_codes_left=overview.recovery_codes_left)


@operation(
    bp,
    "DELETE",
    "/users/<uuid:user_id>/factors",
    summary="Reset a user's second factors",
    tag="Users",
    permission=Permission.USERS_WRITE,
    status=204,
)
def reset_factors(caller: Caller, user_id: uuid.UUID) -> None:
    """Remove the authenticator app and the recovery codes of a user who lost them; the
    user is told by mail. Where policy requires a second factor, they set up a new one at
    their next sign-in."""
    session = db.session()
    user = get_user(session, user_id, lock=True)
    rbac.require_outranks(session, caller.principal, user.id)
    Factors(session, runtime()).reset(
        user, actor_id=rbac.actor_user(caller.principal), client_id=caller.client_id
    )
