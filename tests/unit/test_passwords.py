"""The password policy (NIST SP 800-63B) and the argon2id hasher."""

from __future__ import annotations

import dataclasses

import pytest

from identity.passwords import Hasher, PasswordPolicy, common_passwords

POLICY = PasswordPolicy(min_length=8, max_length=64)


@pytest.fixture(scope="module")
def hasher():
    return Hasher(time_cost=2, memory_cost=19456, parallelism=1)


@pytest.mark.parametrize(
    "password",
    [
        "kq7#vz2m",
        "correcthorsebatterystaple",
        "all lower case words here",
        "🔐🔑🗝️ emoji ok",
        "x" * 7 + "yz",
    ],
)
def test_AUTH_04_acceptable_passwords_have_no_problems(password):
    """Length alone decides for uncommon passwords: no composition rules."""
    assert POLICY.problems(password) == []


def test_AUTH_01_minimum_length():
    """Seven characters are refused with the minimum named; eight are fine."""
    assert POLICY.problems("kq7#vz2") == ["Use at least 8 characters."]
    assert POLICY.problems("kq7#vz2m") == []


def test_AUTH_06_maximum_length():
    """Passwords over the maximum are refused with the maximum named."""
    assert POLICY.problems("k" * 30 + "q" * 35) == ["Use at most 64 characters."]


def test_AUTH_06_the_maximum_itself_is_accepted():
    """A password of exactly the maximum length is fine; one more character is refused."""
    assert POLICY.problems("kq7#vz2m" * 8) == []
    assert POLICY.problems("kq7#vz2m" * 8 + "x") == ["Use at most 64 characters."]


def test_AUTH_06_default_policy_allows_8_to_256_characters():
    """Without settings the policy takes 8 to 256 characters, both ends included (AUTH-01,
    AUTH-06)."""
    policy = PasswordPolicy()
    assert policy.problems("kq7#vz2") == ["Use at least 8 characters."]
    assert policy.problems("kq7#vz2m") == []
    assert policy.problems("kq7#vz2m" * 32) == []
    assert policy.problems("kq7#vz2m" * 32 + "x") == ["Use at most 256 characters."]


def test_the_policy_cannot_be_changed_once_built():
    """The policy is frozen: no code path can lower the limits of the running server."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        POLICY.min_length = 1  # type: ignore[misc]


def test_length_counts_characters_not_code_points():
    """A decomposed accent counts as one character (NFC), not two."""
    decomposed = "e\u0301" * 4 + "xy"  # six characters, ten code points
    assert PasswordPolicy(min_length=8).problems(decomposed) == ["Use at least 8 characters."]


@pytest.mark.parametrize("password", ["password1234", "123456789", "qwertyuiop", " Password1234 "])
def test_AUTH_03_common_passwords_are_refused(password):
    """Entries of the shipped list are refused, whatever the case or surrounding space."""
    assert POLICY.problems(password) == [
        "This password is too common or has appeared in a data breach."
    ]


def test_AUTH_03_common_list_is_large():
    """The shipped list has well over ten thousand entries."""
    assert len(common_passwords()) > 10_000
    assert "12345678" in common_passwords()


def test_AUTH_03_passwords_made_of_the_context_are_refused():
    """A password that is the email or name plus a little is refused."""
    assert POLICY.problems("marguerite1", ("marguerite",)) == [
        "The password is too similar to your email address or name."
    ]
    assert POLICY.problems("marguerite and friends", ("marguerite",)) == []
    assert POLICY.problems("bob-x7k2", ("bob",)) == []  # context words under 4 letters ignored


def test_too_few_distinct_characters_are_refused():
    """Passwords of one or two repeated characters are refused."""
    assert POLICY.problems("abababababab") == ["Use more than two different characters."]


def test_three_distinct_characters_are_enough():
    """Three different characters pass the repetition check, whatever their case."""
    assert POLICY.problems("abcabcabcabc") == []
    assert POLICY.problems("AbAbaBaBABab") == ["Use more than two different characters."]


SIMILAR = ["The password is too similar to your email address or name."]


def test_AUTH_03_context_words_match_whatever_their_case_or_spacing():
    """An email or name typed with capitals or spaces still counts as the same word."""
    assert POLICY.problems("marguerite123", ("Marguerite",)) == SIMILAR
    assert POLICY.problems("MARGUERITE123", ("marguerite",)) == SIMILAR
    assert POLICY.problems("marguerite123", (" marguerite ",)) == SIMILAR


def test_AUTH_03_context_allows_at_most_three_extra_characters():
    """A context word plus three characters is refused; plus four it is the user's choice."""
    assert POLICY.problems("marguerite123", ("marguerite",)) == SIMILAR
    assert POLICY.problems("marguerite1234", ("marguerite",)) == []


def test_AUTH_03_context_words_count_from_four_characters():
    """Four-letter context words count, three-letter ones are too common to refuse."""
    short = PasswordPolicy(min_length=6, max_length=64)
    assert short.problems("anna12", ("anna",)) == SIMILAR
    assert short.problems("bob4x9", ("bob",)) == []


def test_AUTH_03_only_a_context_word_inside_the_password_counts():
    """A password of about the same length as the email, but not containing it, is fine."""
    assert POLICY.problems("qpzmxnwoeiru", ("marguerite",)) == []


def test_hash_is_argon2id_with_the_configured_parameters(hasher):
    """Hashes are argon2id with the settings' cost and a fresh salt each time."""
    first = hasher.hash("a passphrase")
    assert first.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert first != hasher.hash("a passphrase")


def test_verify(hasher):
    """verify() is true only for the exact password and false for broken hashes."""
    stored = hasher.hash("a passphrase")
    assert hasher.verify(stored, "a passphrase") is True
    assert hasher.verify(stored, "a passphrase ") is False
    assert hasher.verify(stored, "A passphrase") is False
    assert hasher.verify("not a hash", "a passphrase") is False
    assert hasher.verify("$argon2id$v=19$m=19456,t=2,p=1$broken", "a passphrase") is False


def test_AUTH_12_burn_does_real_argon2_work(hasher, monkeypatch):
    """burn() runs one real argon2 verification against the dummy hash."""
    calls = []
    real = hasher._hasher

    class Spy:
        def verify(self, stored, password):
            calls.append(stored)
            return real.verify(stored, password)

    monkeypatch.setattr(hasher, "_hasher", Spy())
    hasher.burn("anything")
    assert len(calls) == 1
    assert calls[0].startswith("$argon2id$")


def test_needs_rehash_when_parameters_grow(hasher):
    """A hash made with weaker parameters is flagged for rehashing."""
    stronger = Hasher(time_cost=3, memory_cost=19456, parallelism=1)
    assert stronger.needs_rehash(hasher.hash("a passphrase")) is True
    assert hasher.needs_rehash(hasher.hash("a passphrase")) is False
