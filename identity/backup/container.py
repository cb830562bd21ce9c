"""The backup file: compressed, then encrypted and authenticated in chunks.

Layout (format 1)::

    header   magic "IDBACKUP", format, KDF, scrypt log2(N), r, p, 16-byte salt,
             16-byte key check                                          (45 bytes)
    chunk*   4-byte big-endian length, AES-256-GCM ciphertext and tag

The key is scrypt(passphrase, salt) or the 32 bytes of a key file; HKDF-SHA256 (salted
with the file's own salt, so a key file never encrypts two files under one key) turns it
into the encryption key and a key check. The check tells a wrong passphrase or key apart
from a damaged file. Each chunk's nonce is its number with a flag that marks the last
chunk, and the whole header is the associated data of every chunk: a chunk moved, dropped
or altered, a file cut short or something appended, and a header edited, all fail.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from identity.exceptions import IdentityError

MAGIC = b"IDBACKUP"
FORMAT = 1
KDF_SCRYPT, KDF_KEY = 1, 2
# scrypt: N = 2**17, r = 8 (128 MiB, a few tenths of a second), as OWASP's guidance.
SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P = 17, 8, 1
HEADER = struct.Struct(">8sBBBBB16s")
CHECK_SIZE = 16
HEADER_SIZE = HEADER.size + CHECK_SIZE
CHUNK = 1 << 20  # plaintext (compressed) bytes per chunk
TAG = 16
LENGTH = struct.Struct(">I")
KEY_SIZE = 32
# Refused when reading, so that a crafted header cannot ask for gigabytes of memory.
MAX_SCRYPT_MEMORY = 1 << 30


class BackupError(IdentityError):
    """A backup that cannot be read: not one, damaged, or the wrong passphrase or key."""


@dataclass(frozen=True, repr=False)
class Secret:
    """What encrypts a backup: a passphrase, or a 32-byte key from a key file."""

    passphrase: bytes | None = None
    key: bytes | None = None

    @classmethod
    def from_passphrase(cls, passphrase: str) -> Secret:
        if not passphrase:
            raise BackupError("the passphrase is empty")
        return cls(passphrase=passphrase.encode())

    @classmethod
    def from_key_file(cls, path: Path) -> Secret:
        """A key file holds 32 random bytes, raw or as 64 hexadecimal digits
        (``openssl rand -hex 32``)."""
        try:
            raw = path.read_bytes()
        except OSError as error:
            raise BackupError(f"cannot read the key file {path}: {error.strerror}") from None
        if len(raw) == KEY_SIZE:
            return cls(key=raw)
        try:
            key = bytes.fromhex(raw.decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            key = b""
        if len(key) != KEY_SIZE:
            raise BackupError(
                f"the key file {path} must hold 32 random bytes, raw or as 64 hexadecimal "
                "digits (openssl rand -hex 32 > FILE)"
            )
        return cls(key=key)

    @property
    def kind(self) -> str:
        return "a passphrase" if self.passphrase is not None else "a key file"


def _derive(secret: Secret, kdf: int, scrypt: tuple[int, int, int], salt: bytes) -> bytes:
    """The encryption key and the check key; ``scrypt`` is log2(N), r and p."""
    if kdf == KDF_SCRYPT:
        log_n, r, p = scrypt
        if secret.passphrase is None:
            raise BackupError("the backup is encrypted with a passphrase: give --passphrase-stdin")
        master = Scrypt(salt=salt, length=KEY_SIZE, n=1 << log_n, r=r, p=p).derive(
            secret.passphrase
        )
    else:
        if secret.key is None:
            raise BackupError("the backup is encrypted with a key file: give --key-file")
        master = secret.key
    return HKDF(
        algorithm=hashes.SHA256(), length=2 * KEY_SIZE, salt=salt, info=b"identity-backup/1"
    ).derive(master)


def _check(check_key: bytes, fields: bytes) -> bytes:
    return hmac.new(check_key, fields, hashlib.sha256).digest()[:CHECK_SIZE]


def _nonce(number: int, final: bool) -> bytes:
    return number.to_bytes(11, "big") + (b"\x01" if final else b"\x00")


class Writer:
    """Compresses what is written and encrypts it in chunks into ``sink``; ``close()``
    writes the last chunk, without which the file reads as cut short."""

    def __init__(self, sink: IO[bytes], secret: Secret) -> None:
        salt = os.urandom(16)
        if secret.passphrase is not None:
            fields = HEADER.pack(MAGIC, FORMAT, KDF_SCRYPT, SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P, salt)
            keys = _derive(secret, KDF_SCRYPT, (SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P), salt)
        else:
            fields = HEADER.pack(MAGIC, FORMAT, KDF_KEY, 0, 0, 0, salt)
            keys = _derive(secret, KDF_KEY, (0, 0, 0), salt)
        self._header = fields + _check(keys[KEY_SIZE:], fields)
        self._aead = AESGCM(keys[:KEY_SIZE])
        self._sink = sink
        self._compressor = zlib.compressobj(6)
        self._pending = bytearray()
        self._number = 0
        sink.write(self._header)

    def write(self, data: bytes) -> None:
        self._pending += self._compressor.compress(data)
        while len(self._pending) > CHUNK:
            self._emit(bytes(self._pending[:CHUNK]), final=False)
            del self._pending[:CHUNK]

    def close(self) -> None:
        self._pending += self._compressor.flush()
        while len(self._pending) > CHUNK:
            self._emit(bytes(self._pending[:CHUNK]), final=False)
            del self._pending[:CHUNK]
        self._emit(bytes(self._pending), final=True)
        self._pending.clear()

    def _emit(self, plain: bytes, *, final: bool) -> None:
        sealed = self._aead.encrypt(_nonce(self._number, final), plain, self._header)
        self._sink.write(LENGTH.pack(len(sealed)) + sealed)
        self._number += 1


def _read_exactly(source: IO[bytes], size: int) -> bytes:
    data = source.read(size)
    if len(data) != size:
        raise BackupError("the backup is cut short (truncated)")
    return data


def _open_header(source: IO[bytes], secret: Secret) -> tuple[bytes, AESGCM]:
    raw = source.read(HEADER_SIZE)
    if len(raw) < HEADER.size or not raw.startswith(MAGIC):
        raise BackupError("not an identity backup")
    _, version, kdf, log_n, r, p, salt = HEADER.unpack(raw[: HEADER.size])
    if version != FORMAT:
        raise BackupError(f"backup format {version}: this version of identity reads format 1")
    if len(raw) < HEADER_SIZE:
        raise BackupError("the backup is cut short (truncated)")
    if kdf == KDF_SCRYPT:
        if min(log_n, r, p) < 1 or 128 * r * (1 << log_n) > MAX_SCRYPT_MEMORY:
            raise BackupError("the backup's header is damaged (key derivation parameters)")
    elif kdf != KDF_KEY:
        raise BackupError("the backup's header is damaged (unknown key derivation)")
    keys = _derive(secret, kdf, (log_n, r, p), salt)
    if not hmac.compare_digest(_check(keys[KEY_SIZE:], raw[: HEADER.size]), raw[HEADER.size :]):
        raise BackupError(
            f"wrong {'passphrase' if kdf == KDF_SCRYPT else 'key'} for this backup "
            "(or its header is damaged)"
        )
    return raw, AESGCM(keys[:KEY_SIZE])


def read(source: IO[bytes], secret: Secret) -> Iterator[bytes]:
    """The decompressed contents, piece by piece; every chunk is authenticated before
    anything of it is returned. A BackupError says what is wrong."""
    header, aead = _open_header(source, secret)
    decompressor = zlib.decompressobj()
    number = 0
    while True:
        prefix = source.read(LENGTH.size)
        if len(prefix) < LENGTH.size:
            raise BackupError("the backup is cut short (truncated)")
        (length,) = LENGTH.unpack(prefix)
        if not TAG <= length <= CHUNK + TAG:
            raise BackupError(f"the backup is damaged at chunk {number + 1}")
        sealed = _read_exactly(source, length)
        final = False
        try:
            plain = aead.decrypt(_nonce(number, False), sealed, header)
        except InvalidTag:
            try:
                plain = aead.decrypt(_nonce(number, True), sealed, header)
                final = True
            except InvalidTag:
                raise BackupError(
                    f"the backup is damaged or was altered (chunk {number + 1} fails "
                    "authentication)"
                ) from None
        try:
            piece = decompressor.decompress(plain)
        except zlib.error:
            raise BackupError("the backup cannot be decompressed") from None
        if piece:
            yield piece
        number += 1
        if final:
            break
    if source.read(1):
        raise BackupError("the backup has data after its last chunk (altered)")
    tail = decompressor.flush()
    if tail:
        yield tail
    if not decompressor.eof or decompressor.unused_data:
        raise BackupError("the backup's compressed contents are incomplete")
