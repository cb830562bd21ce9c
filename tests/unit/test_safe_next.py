"""safe_next(): only same-origin paths may follow a redirect (BCP-04)."""

from __future__ import annotations

import pytest

from identity.security import safe_next

EVIL = [
    "https://evil.example/",
    "http://evil.example",
    "HTTPS://evil.example",
    "//evil.example",
    "///evil.example",
    "////evil.example/path",
    "/\\evil.example",
    "\\/evil.example",
    "\\\\evil.example",
    "/\\/evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r\n/evil.example",
    "/\x00/evil.example",
    " //evil.example",
    "https:evil.example",
    "https:/evil.example",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    " javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    "evil.example",
    "@evil.example",
    "#/evil",
    "?next=//evil",
    "/" + "a" * 2000,
    "",
    None,
]


@pytest.mark.parametrize("target", EVIL)
def test_BCP_04_foreign_or_odd_targets_fall_back_to_the_default(target):
    """Absolute, protocol-relative, backslash, scheme and control-character targets are refused."""
    assert safe_next(target, "/account") == "/account"


@pytest.mark.parametrize(
    "target",
    [
        "/",
        "/account",
        "/account/password",
        "/authorize?client_id=x&state=y",
        "/a/b%2F%2Fc",
        "/x#frag",
    ],
)
def test_BCP_04_local_paths_are_kept(target):
    """Same-origin absolute paths pass unchanged."""
    assert safe_next(target, "/account") == target


def test_default_is_slash():
    """Without a default, a refused target becomes /."""
    assert safe_next("//evil.example") == "/"
