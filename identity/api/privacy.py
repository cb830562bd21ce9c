"""A person's data, for operators (GDPR): export it for a subject access request, erase it
with a reason. The same services as `identity gdpr export` and `identity gdpr erase`."""

from __future__ import annotations

import uuid
from datetime import datetime

from flask import Response
from pydantic import Field

from identity.api import bp
from identity.api.auth import Caller
from identity.api.common import Input, Output
from identity.api.operations import operation
from identity.api.users import get_user
from identity.extensions import db
from identity.models.user import User
from identity.privacy import jobs
from identity.privacy.erasure import Erasure
from identity.rbac.permissions import Permission
from identity.runtime import runtime


@operation(
    bp,
    "GET",
    "/users/<uuid:user_id>/export",
    summary="Export a user's data",
    tag="Users",
    permission=Permission.USERS_WRITE,
    produces="application/zip",
)
def export_user(caller: Caller, user_id: uuid.UUID) -> Response:
    """The signed ZIP the person can download themselves (data.json, its schema, a
    readable index.html, a detached JWS over the manifest), for a subject access request.
    As sensitive as changing the user: it needs users:write, and is audited."""
    session = db.session()
    user = get_user(session, user_id)
    data = jobs.export_for_operator(
        session, runtime(), user, actor=caller.principal, client_id=caller.client_id
    )
    return bundle_download(user, data)


def bundle_download(user: User, data: bytes) -> Response:
    """A user's export bundle as a ZIP download (the console answers the same)."""
    return Response(
        data,
        mimetype="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="identity-export-{user.id}.zip"',
            "Cache-Control": "no-store",
        },
    )


class ErasureIn(Input):
    reason: str = Field(
        min_length=1,
        max_length=200,
        description="Why (kept in the audit trail: write no personal data in it).",
    )
    now: bool = Field(
        False,
        description="Erase at once; otherwise the account is disabled and erased after "
        "the cooling-off period (IDENTITY_GDPR_COOLING_OFF_DAYS).",
    )


class ErasureOut(Output):
    erased: bool = Field(description="Whether the account is erased already.")
    receipt_id: str | None = Field(description="The erasure's receipt (when erased).")
    erase_on: datetime | None = Field(description="When it will be erased (when scheduled).")


@operation(
    bp,
    "POST",
    "/users/<uuid:user_id>/erasure",
    summary="Erase a user (GDPR)",
    tag="Users",
    permission=Permission.USERS_WRITE,
    body=ErasureIn,
    response=ErasureOut,
    errors=(409,),
)
def erase_user(caller: Caller, user_id: uuid.UUID, body: ErasureIn) -> ErasureOut:
    """Erase the account with a reason: at once (`now`), or after the cooling-off period
    (disabled meanwhile). Clients the person used are told; the audit trail keeps its
    records with the person taken out. The last active administrator cannot be erased
    (409)."""
    session = db.session()
    user = get_user(session, user_id, lock=True)
    erasure = Erasure(session, runtime())
    if body.now:
        receipt = erasure.erase(
            user,
            requested_by=caller.user_id,
            reason=body.reason,
            actor=caller.principal,
            client_id=caller.client_id,
        )
        return ErasureOut(erased=True, receipt_id=receipt.receipt_id, erase_on=None)
    job = erasure.request(
        user,
        by_operator=True,
        requested_by=caller.user_id,
        reason=body.reason,
        actor=caller.principal,
    )
    return ErasureOut(erased=False, receipt_id=None, erase_on=job.run_after)
