"""Encryption at rest: AES-256-GCM under a per-purpose key derived from the secret key."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from identity.sealing import PREFIX, Sealer, SealError

SECRET = "unit-test-secret-" + "s" * 32
INFO, AAD = b"identity mail outbox v1", b"mail"


def sealer(secret: str = SECRET, info: bytes = INFO, aad: bytes = AAD) -> Sealer:
    return Sealer(secret, info=info, aad=aad)


def test_a_sealed_value_opens_with_its_context():
    """What is sealed comes back unchanged, with and without a context."""
    box = sealer()
    assert box.open(box.seal(b"private key bytes")) == b"private key bytes"
    assert box.open(box.seal(b"mail", b"row-7"), b"row-7") == b"mail"
    assert box.open(box.seal(b"")) == b""


def test_CRYPTO_04_sealing_is_aes_256_gcm_under_an_hkdf_key():
    """A value is "v1." and base64url of a 12-byte nonce and the AES-256-GCM ciphertext, the
    key being HKDF-SHA256 of the secret key for the purpose: an independent implementation
    opens it, and a value it seals opens here (rows written before an upgrade stay
    readable)."""
    box = sealer()
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=INFO).derive(SECRET.encode())
    sealed = box.seal(b"plain", b"ctx")
    assert sealed.startswith(PREFIX) and PREFIX == "v1."
    raw = base64.urlsafe_b64decode(sealed[len(PREFIX) :])
    assert len(raw) == 12 + len(b"plain") + 16
    assert AESGCM(key).decrypt(raw[:12], raw[12:], AAD + b"ctx") == b"plain"
    nonce = b"n" * 12
    theirs = PREFIX + base64.urlsafe_b64encode(
        nonce + AESGCM(key).encrypt(nonce, b"plain", AAD + b"ctx")
    ).decode("ascii")
    assert box.open(theirs, b"ctx") == b"plain"


def test_every_seal_uses_a_fresh_nonce():
    """Sealing the same value twice gives two different ciphertexts."""
    box = sealer()
    assert box.seal(b"same") != box.seal(b"same")


def test_REL_12_a_value_opens_only_under_its_own_secret_purpose_and_context():
    """Another secret key, another purpose (HKDF info or AAD) or another context (a row
    moved elsewhere) makes the value unreadable: SealError, never None or garbage."""
    sealed = sealer().seal(b"reset link", b"row-1")
    for other, context in (
        (sealer(secret="another-secret-" + "t" * 32), b"row-1"),
        (sealer(info=b"identity signing keys v1"), b"row-1"),
        (sealer(aad=b"signing-key"), b"row-1"),
        (sealer(), b"row-2"),
        (sealer(), b""),
    ):
        with pytest.raises(SealError, match="cannot be decrypted"):
            other.open(sealed, context)


def _raw(sealed: str) -> bytes:
    return base64.urlsafe_b64decode(sealed[len(PREFIX) :])


@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: s[:-2] + ("A" if s[-2] != "A" else "B") + s[-1],  # ciphertext or tag changed
        lambda s: s[:10],  # truncated
        lambda s: PREFIX + base64.urlsafe_b64encode(_raw(s) + b"x").decode(),  # extended
        lambda s: PREFIX + "not base64!",
        lambda s: PREFIX,
    ],
    ids=["altered", "truncated", "extended", "not-base64", "empty"],
)
def test_an_altered_value_raises_instead_of_returning(mangle):
    """Tampered or broken values raise SealError; open() never returns for them."""
    box = sealer()
    with pytest.raises(SealError, match="cannot be decrypted"):
        box.open(mangle(box.seal(b"secret")))


@pytest.mark.parametrize("prefix", ["v2.", "v0.", "V1.", ""])
def test_values_of_another_format_are_refused(prefix):
    """Only the "v1." format opens: the same ciphertext under another version tag is
    refused for its format, not decrypted."""
    box = sealer()
    body = box.seal(b"secret")[len(PREFIX) :]
    with pytest.raises(SealError, match="unknown encryption format"):
        box.open(prefix + body)
