"""/admin/explorer: may this subject do that? The engine's decision with its explanation, and
what it would be if the subject had a role more or less (nothing is changed).

The same evaluation as POST /api/v1/authz/check and /api/v1/authz/what-if
(identity.api.authz), over the same snapshot. A GET form: a question is a link to share.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from flask import request
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from identity.accounts.management import find_user
from identity.admin.console import page, render
from identity.admin.rbac_common import parse, refused
from identity.api.authz import (
    Changes,
    CheckRequest,
    CheckResult,
    Subject,
    changed_snapshot,
    client_pk,
    current_snapshot,
    evaluate,
    principal_of,
)
from identity.exceptions import IdentityError
from identity.extensions import db
from identity.models.rbac import Role
from identity.rbac.permissions import Permission
from identity.rbac.policy import Snapshot

FIELDS = ("subject", "permission", "client", "add", "remove")


@dataclass(frozen=True)
class Answer:
    """A decision as the page shows it: the engine's, with people's names in its path."""

    result: CheckResult
    path: list[dict[str, Any]]
    roles: list[str]  # every role the subject has there
    held: set[str]  # every grant the subject holds there


@page("/explorer", Permission.AUTHZ_CHECK)
def explorer() -> ResponseReturnValue:
    asked = {key: request.args.get(key, "").strip() for key in FIELDS}
    session = db.session()
    context: dict[str, Any] = {
        "asked": asked,
        "role_names": list(session.execute(select(Role.name).order_by(Role.name)).scalars()),
        "permissions": [p.value for p in Permission],
    }
    if not (asked["subject"] or asked["permission"]):
        return render("rbac/explorer.html", **context)
    try:
        snapshot = current_snapshot()
        subject, label = _subject(asked["subject"])
        question = parse(
            CheckRequest,
            subject=subject,
            permission=asked["permission"],
            client_id=asked["client"] or None,
        )
        context["before"] = _answer(snapshot, question, label)
        if asked["add"] or asked["remove"]:
            changes = parse(Changes, **_changes(asked))
            changed = changed_snapshot(snapshot, session, subject, changes)
            context["after"] = _answer(changed, question, label)
    except IdentityError as error:
        message, status = refused(error)
        return render("rbac/explorer.html", status, error=message, **context)
    return render("rbac/explorer.html", **context)


def _subject(text: str) -> tuple[Subject, str]:
    """A user by email, or a client's service account by client id."""
    if "@" in text:
        user = find_user(db.session(), text)
        return parse(Subject, user_id=user.id), user.email
    return parse(Subject, client_id=text or None), text


def _changes(asked: dict[str, str]) -> dict[str, Any]:
    """A role added for the subject everywhere; a role removed everywhere and, when the
    question is about a client, within it too."""
    removed = []
    if asked["remove"]:
        removed.append({"role": asked["remove"]})
        if asked["client"]:
            removed.append({"role": asked["remove"], "client_id": asked["client"]})
    return {"add_roles": [{"role": asked["add"]}] if asked["add"] else [], "remove_roles": removed}


def _answer(snapshot: Snapshot, question: CheckRequest, label: str) -> Answer:
    result = evaluate(snapshot, question)
    kind, principal = principal_of(snapshot, question.subject)
    scope = client_pk(snapshot, question.client_id) if question.client_id else None
    path = []
    for step in result.explanation.get("path", []):
        shown = dict(step)
        if step["type"] in ("user", "client"):
            shown["name"] = label
        if "scope" in step:
            shown["scope"] = snapshot.names.get(uuid.UUID(step["scope"]), step["scope"])
        path.append(shown)
    return Answer(
        result=result,
        path=path,
        roles=snapshot.role_names(kind, principal, scope),
        held=set(snapshot.holdings(kind, principal, scope)),
    )
