"""Each built-in role against every console page: signed in as an operator of
that role, a page opens (200) exactly when the role holds the page's permission, and is
refused (403) otherwise; a user with no role is refused everywhere. The pages are read from
the URL map, so a new page is covered the day it is added."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from identity.admin.console import CONSOLE
from identity.rbac.permissions import BUILTIN_ROLES, Permission, covering

ROLES = (*BUILTIN_ROLES, None)


def console_pages(app: Flask) -> list[tuple[str, str]]:
    """(path, permission) of every console page a GET opens without a path parameter."""
    pages = []
    for rule in app.url_map.iter_rules():
        if (
            rule.endpoint.startswith("admin.")
            and "GET" in (rule.methods or ())
            and not rule.arguments
        ):
            view = app.view_functions[rule.endpoint]
            pages.append((rule.rule, view.required_permission))
    return sorted(pages)


def holds(role: str | None, permission: str) -> bool:
    if role is None:
        return False
    granted = BUILTIN_ROLES[role][1]
    if permission == CONSOLE:
        return any(holds(role, p) for p in Permission)
    return any(g in granted for g in covering(permission))


def test_every_console_page_is_listed(app: Flask) -> None:
    paths = [path for path, _ in console_pages(app)]
    assert "/admin/" in paths
    assert all(permission for _, permission in console_pages(app))


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r or "no-role")
def test_AUTHZ_07_each_role_opens_exactly_the_pages_it_may(
    app: Flask, operator: Callable[..., FlaskClient], role: str | None
) -> None:
    browser = operator(*([role] if role else []))
    wrong = []
    for path, permission in console_pages(app):
        expected = 200 if holds(role, permission) else 403
        status = browser.get(path).status_code
        if status != expected:
            wrong.append(f"{path} ({permission}): {status}, expected {expected}")
    assert wrong == []


def test_AUTHZ_07_the_auditor_sees_no_write_action(
    app: Flask, operator: Callable[..., FlaskClient]
) -> None:
    """Read-only: no page the auditor opens offers a form that changes anything (the only
    POST forms allowed are those of reading actions, such as verifying the chain)."""
    browser = operator("auditor")
    offending = []
    for path, permission in console_pages(app):
        if not holds("auditor", permission):
            continue
        page = browser.get(path).text
        for form in page.split("<form")[1:]:
            head = form.split(">", 1)[0]
            if 'method="post"' in head and "/verify" not in head and "/sign-out" not in head:
                offending.append(f"{path}: {head.strip()}")
    assert offending == []
