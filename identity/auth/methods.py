"""The authentication methods identity knows, and the assurance levels (ACRs) they reach.

Registered once here: the sign-in steps use the registry, discovery publishes the ACRs,
and tokens carry the RFC 8176 ``amr`` values of the steps a sign-in went through.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Factor(StrEnum):
    KNOWLEDGE = "knowledge"  # something you know
    POSSESSION = "possession"  # something you have


@dataclass(frozen=True)
class Method:
    name: str
    amr: str  # RFC 8176 value
    factor: Factor
    label: str


PASSWORD = Method("password", "pwd", Factor.KNOWLEDGE, "Password")
TOTP = Method("totp", "otp", Factor.POSSESSION, "Authenticator app")
# A recovery code stands in for the authenticator app: a one-time code (RFC 8176 "otp").
RECOVERY_CODE = Method("recovery_code", "otp", Factor.POSSESSION, "Recovery code")
# A passkey or security key: "hwk" (or "swk" when synced between devices; see
# identity.auth.passkeys), plus "mfa" when the device verified the user (PIN, biometrics).
PASSKEY = Method("passkey", "hwk", Factor.POSSESSION, "Passkey or security key")
SYNCED_PASSKEY = Method("synced_passkey", "swk", Factor.POSSESSION, "Passkey")

METHODS = {m.name: m for m in (PASSWORD, TOTP, RECOVERY_CODE, PASSKEY, SYNCED_PASSKEY)}
MULTI_FACTOR = "mfa"  # RFC 8176: the method itself was multi-factor

# Authentication context classes (OIDC Core 2 ``acr``): one factor, or two.
ACR_ONE_FACTOR = "urn:identity:loa:1fa"
ACR_TWO_FACTORS = "urn:identity:loa:2fa"
ACRS = (ACR_ONE_FACTOR, ACR_TWO_FACTORS)  # weakest first
FACTOR_AMR = {method.amr: method.factor for method in METHODS.values()}


def acr_for(amr: list[str]) -> str:
    """Two different kinds of factor (say pwd, then otp), or one method that was
    multi-factor itself (a passkey that verified the user: ``mfa``), make two factors."""
    if MULTI_FACTOR in amr:
        return ACR_TWO_FACTORS
    factors = {FACTOR_AMR.get(value) for value in amr} - {None}
    return ACR_TWO_FACTORS if len(factors) >= len(Factor) else ACR_ONE_FACTOR


def satisfies(acr: str | None, wanted: str) -> bool:
    """Whether a sign-in at ``acr`` meets ``wanted`` (an ACR of ours)."""
    if acr not in ACRS or wanted not in ACRS:
        return False
    return ACRS.index(acr) >= ACRS.index(wanted)
