"""The export bundle: a ZIP holding

- ``data.json``: the export (identity.privacy.export), machine-readable;
- ``schema.json``: its JSON Schema;
- ``index.html``: the same for people (escaped, no scripts, no external resources);
- ``manifest.json``: the SHA-256 of each of those, the issuer, the subject and the time;
- ``manifest.jws``: a detached JWS (RFC 7515 appendix F) over ``manifest.json``, signed
  with the server's signing key, so the holder can prove where the bundle came from.

``verify`` checks a bundle against the keys the server publishes (``identity gdpr
verify-bundle FILE``).
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import Key
from joserfc.util import json_b64decode

from identity import paths

FILES = ("data.json", "schema.json", "index.html")
MAX_MEMBER = 256 * 1024 * 1024  # refuse to read more than this of one member


class BundleError(Exception):
    """The bundle is not one this server made, or was changed."""


def _html(export: dict[str, Any]) -> str:
    environment = Environment(
        loader=FileSystemLoader(str(paths.templates_dir() / "privacy")),
        autoescape=select_autoescape(("html",), default=True),
    )
    return environment.get_template("export.html").render(export=export)


def build(export: dict[str, Any], schema: dict[str, Any], alg: str, kid: str, key: Key) -> bytes:
    """The ZIP of an export, signed with ``key`` (``kid``, ``alg``)."""
    contents = {
        "data.json": json.dumps(export, indent=2).encode(),  # in inventory order
        "schema.json": json.dumps(schema, indent=2, sort_keys=True).encode(),
        "index.html": _html(export).encode(),
    }
    manifest = json.dumps(
        {
            "issuer": export["issuer"],
            "subject": export["subject"],
            "generated_at": export["generated_at"],
            "files": {name: hashlib.sha256(body).hexdigest() for name, body in contents.items()},
        },
        indent=2,
        sort_keys=True,
    ).encode()
    compact = jws.serialize_compact({"alg": alg, "kid": kid}, manifest, key, algorithms=[alg])
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, body in contents.items():
            archive.writestr(name, body)
        archive.writestr("manifest.json", manifest)
        archive.writestr("manifest.jws", jws.detach_content(compact))
    return out.getvalue()


def _read(archive: zipfile.ZipFile, name: str) -> bytes:
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise BundleError(f"{name} is missing") from None
    if info.file_size > MAX_MEMBER:
        raise BundleError(f"{name} is too large")
    return archive.read(name)


def kid_of(bundle: bytes) -> str:
    """The id of the key that signed a bundle (to find it among the published keys)."""
    try:
        with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
            header = _read(archive, "manifest.jws").split(b".")[0]
        protected = json_b64decode(header)
    except (zipfile.BadZipFile, ValueError) as error:
        raise BundleError(f"not an export bundle: {error}") from None
    kid = protected.get("kid") if isinstance(protected, dict) else None
    if not isinstance(kid, str):
        raise BundleError("manifest.jws names no key")
    return kid


def verify(bundle: bytes, alg: str, key: Key) -> dict[str, Any]:
    """Check the signature over the manifest and every file's hash; returns the manifest."""
    try:
        with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
            manifest = _read(archive, "manifest.json")
            signature = _read(archive, "manifest.jws")
            files = {name: _read(archive, name) for name in FILES}
    except zipfile.BadZipFile as error:
        raise BundleError(f"not an export bundle: {error}") from None
    try:
        jws.deserialize_compact(signature, key, algorithms=[alg], payload=manifest)
    except (JoseError, ValueError) as error:
        raise BundleError(f"the signature does not verify: {error}") from None
    listed = json.loads(manifest)
    for name, body in files.items():
        if listed.get("files", {}).get(name) != hashlib.sha256(body).hexdigest():
            raise BundleError(f"{name} was changed after it was signed")
    return dict(listed)
