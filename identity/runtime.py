"""Objects built once per app from the settings, shared by views and services: their
holder, ``Runtime``, and ``runtime()``, which finds the current app's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import current_app

if TYPE_CHECKING:
    # Types only: the services import this module for ``runtime()``, and the composition
    # root (identity.factory.build_runtime) builds the objects.
    from identity.accounts.throttle import DeviceCookie, ThrottlePolicy
    from identity.auth.passkeys import Passkeys
    from identity.auth.recovery import RecoveryCodes
    from identity.auth.totp import TotpService
    from identity.changes import ChangeFeed
    from identity.links import LinkSigner
    from identity.mail import Mailer
    from identity.oauth.clients.authentication import JwksCache
    from identity.oauth.clients.service import ClientCache
    from identity.oauth.keys import KeyStore
    from identity.oauth.profiles import ProfileCache
    from identity.oauth.tokens import TokenService
    from identity.passwords import Hasher, PasswordPolicy
    from identity.rbac.store import SnapshotCache
    from identity.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    secret_key: str
    hasher: Hasher
    password_policy: PasswordPolicy
    links: LinkSigner
    mailer: Mailer
    device_cookie: DeviceCookie
    throttle_policy: ThrottlePolicy
    keys: KeyStore
    clients: ClientCache
    tokens: TokenService
    profiles: ProfileCache  # UserInfo's claims, kept as current as the revocations
    jwks_cache: JwksCache  # clients' fetched jwks_uri documents
    changes: ChangeFeed  # kept current by a listener thread in each serving worker
    rbac: SnapshotCache  # the policy snapshot (roles, groups, assignments)
    totp: TotpService  # authenticator apps (seeds sealed under the server secret)
    recovery_codes: RecoveryCodes
    passkeys: Passkeys  # WebAuthn, for the issuer's host name and origin


def runtime() -> Runtime:
    return current_app.extensions["identity"]  # type: ignore[no-any-return]
