"""normalize_email(): one canonical form per mailbox (INPUT-11), and clean_name()."""

from __future__ import annotations

import pytest

from identity.accounts.service import InvalidEmail, clean_name, normalize_email


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("Alice@Example.ORG", "alice@example.org"),
        ("  alice@example.org\t", "alice@example.org"),
        ("\uff41\uff4c\uff49\uff43\uff45@example.org", "alice@example.org"),  # fullwidth
        ("alice\uff20example.org", "alice@example.org"),  # fullwidth @
        ("bob@B\u00fccher.example", "bob@b\u00fccher.example"),
        ("bob@xn--bcher-kva.example", "bob@b\u00fccher.example"),
        ("jose\u0301@example.org", "jos\u00e9@example.org"),  # NFD to NFC
        ("Alice+Tag@Example.org", "alice+tag@example.org"),  # a plus tag is another mailbox
    ],
)
def test_INPUT_11_canonical_forms(raw, canonical):
    """Case, width, spacing, Unicode form and IDN spelling all reduce to one form."""
    assert normalize_email(raw) == canonical


@pytest.mark.parametrize(
    "raw",
    [
        "",
        None,
        "no-at-sign",
        "two@@example.org",
        "a@b",
        "user@example.org\r\nBcc: x@evil.test",
        "user@exa mple.org",
        "a" * 310 + "@example.org",
        "<script>@example.org",
    ],
)
def test_invalid_addresses_raise(raw):
    """Anything that is not one valid address raises InvalidEmail with a safe message."""
    with pytest.raises(InvalidEmail, match=r"Enter a valid email address\."):
        normalize_email(raw)


def test_clean_name():
    """Names lose control characters and outer space, are capped at 200, and may be absent."""
    assert clean_name("  Ada\r\n Lovelace\x1b[0m ") == "Ada Lovelace[0m"
    assert clean_name("\x00\x07") is None
    assert clean_name(None) is None
    assert len(clean_name("n" * 500)) == 200
    assert clean_name('<b>"Bold"</b>') == '<b>"Bold"</b>'  # escaped when shown, kept as typed
