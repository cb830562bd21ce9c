"""Passkeys and security keys (WebAuthn, through the ``webauthn`` package).

The relying party id is the issuer's host name, and answers must come from the issuer's
origin. Registration asks for a discoverable credential (a passkey: it can sign in without
an email address). A passkey used after the password is a second factor (``hwk``, or
``swk`` for one synced between devices); used alone it must verify the user (PIN or
biometrics on the device), which adds ``mfa``. The signature counter is checked: an
authenticator reporting a counter that went backwards (a clone) is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from identity.models.base import utcnow
from identity.models.mfa import WebAuthnCredential
from identity.models.user import User

MAX_NAME = 100
TRANSPORTS = {t.value: t for t in AuthenticatorTransport}


class PasskeyError(Exception):
    """The authenticator's answer does not check out; the message is for the user."""


@dataclass(frozen=True)
class Challenge:
    options: str  # JSON for navigator.credentials.create() / .get()
    challenge: str  # base64url, to keep server-side until the answer comes


@dataclass(frozen=True)
class Used:
    credential: WebAuthnCredential
    user_verified: bool

    @property
    def amr(self) -> list[str]:
        """RFC 8176: hardware- or software-held key, and ``mfa`` when the authenticator
        verified the user itself (a PIN or biometrics: a second factor on the device)."""
        key = "swk" if self.credential.backed_up else "hwk"
        return [key, "mfa"] if self.user_verified else [key]


def _descriptor(credential: WebAuthnCredential) -> PublicKeyCredentialDescriptor:
    return PublicKeyCredentialDescriptor(
        id=base64url_to_bytes(credential.credential_id),
        transports=[TRANSPORTS[t] for t in credential.transports if t in TRANSPORTS] or None,
    )


def _parse(answer: str) -> dict[str, Any]:
    try:
        data = json.loads(answer)
    except ValueError:
        raise PasskeyError("The answer from the browser is not readable.") from None
    if not isinstance(data, dict):
        raise PasskeyError("The answer from the browser is not readable.")
    return data


class Passkeys:
    def __init__(self, issuer: str, rp_name: str = "identity") -> None:
        parts = urlsplit(issuer)
        self.rp_id = parts.hostname or "localhost"
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.rp_name = rp_name

    def of(self, session: Session, user: User) -> list[WebAuthnCredential]:
        return list(
            session.execute(
                select(WebAuthnCredential)
                .where(WebAuthnCredential.user_id == user.id)
                .order_by(WebAuthnCredential.created_at)
            ).scalars()
        )

    # Registering -----------------------------------------------------------------------

    def registration(self, session: Session, user: User) -> Challenge:
        options = generate_registration_options(
            rp_id=self.rp_id,
            rp_name=self.rp_name,
            user_name=user.email,
            user_id=user.id.bytes,  # the user handle: an opaque id, no personal data
            user_display_name=user.name or user.email,
            exclude_credentials=[_descriptor(c) for c in self.of(session, user)],
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED,
                user_verification=UserVerificationRequirement.PREFERRED,
            ),
        )
        return Challenge(options_to_json(options), bytes_to_base64url(options.challenge))

    def register(
        self, session: Session, user: User, answer: str, challenge: str, name: str
    ) -> WebAuthnCredential:
        data = _parse(answer)
        try:
            verified = verify_registration_response(
                credential=data,
                expected_challenge=base64url_to_bytes(challenge),
                expected_rp_id=self.rp_id,
                expected_origin=self.origin,
            )
        except (WebAuthnException, ValueError, KeyError, TypeError) as error:
            raise PasskeyError(f"The passkey could not be checked: {error}") from None
        credential_id = bytes_to_base64url(verified.credential_id)
        taken = session.execute(
            select(WebAuthnCredential.id).where(WebAuthnCredential.credential_id == credential_id)
        ).first()
        if taken is not None:
            raise PasskeyError("This passkey is already registered.")
        transports = (data.get("response") or {}).get("transports") or []
        credential = WebAuthnCredential(
            user_id=user.id,
            credential_id=credential_id,
            public_key=verified.credential_public_key,
            sign_count=verified.sign_count,
            transports=[t for t in transports if t in TRANSPORTS],
            name=(name.strip() or "Passkey")[:MAX_NAME],
            discoverable=True,  # registration requires a resident (discoverable) key
            backed_up=bool(verified.credential_backed_up),
            created_at=utcnow(),
        )
        session.add(credential)
        session.flush()
        return credential

    # Signing in --------------------------------------------------------------------------

    def authentication(self, session: Session, user: User | None) -> Challenge:
        """For the second step (``user`` known: their credentials), or for a passkey
        sign-in (anyone's discoverable credential, and the user must be verified)."""
        options = generate_authentication_options(
            rp_id=self.rp_id,
            allow_credentials=[_descriptor(c) for c in self.of(session, user)] if user else None,
            user_verification=(
                UserVerificationRequirement.PREFERRED
                if user
                else UserVerificationRequirement.REQUIRED
            ),
        )
        return Challenge(options_to_json(options), bytes_to_base64url(options.challenge))

    def authenticate(
        self,
        session: Session,
        answer: str,
        challenge: str,
        user: User | None,
        now: datetime | None = None,
    ) -> Used:
        data = _parse(answer)
        credential_id = str(data.get("rawId") or data.get("id") or "")
        query = select(WebAuthnCredential).where(WebAuthnCredential.credential_id == credential_id)
        if user is not None:
            query = query.where(WebAuthnCredential.user_id == user.id)
        credential = session.execute(query).scalar_one_or_none()
        if credential is None:
            raise PasskeyError("This passkey is not registered here.")
        try:
            verified = verify_authentication_response(
                credential=data,
                expected_challenge=base64url_to_bytes(challenge),
                expected_rp_id=self.rp_id,
                expected_origin=self.origin,
                credential_public_key=credential.public_key,
                credential_current_sign_count=credential.sign_count,
                require_user_verification=user is None,
            )
        except (WebAuthnException, ValueError, KeyError, TypeError) as error:
            raise PasskeyError(f"The passkey could not be checked: {error}") from None
        credential.sign_count = verified.new_sign_count
        credential.backed_up = bool(verified.credential_backed_up)
        credential.last_used_at = now or utcnow()
        session.flush()
        return Used(credential, bool(verified.user_verified))

    # Managing ----------------------------------------------------------------------------

    def find(self, session: Session, user: User, credential_pk: str) -> WebAuthnCredential | None:
        return next((c for c in self.of(session, user) if str(c.id) == credential_pk), None)

    def rename(self, credential: WebAuthnCredential, name: str) -> None:
        credential.name = (name.strip() or credential.name)[:MAX_NAME]

    def remove(self, session: Session, credential: WebAuthnCredential) -> None:
        session.delete(credential)
        session.flush()
