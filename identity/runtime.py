"""Objects built once per app from the settings, shared by views and services."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from identity.accounts.throttle import DeviceCookie, ThrottlePolicy
from identity.links import LinkSigner
from identity.mail import Mailer
from identity.oauth.clients import ClientCache
from identity.oauth.keys import KeyCipher, KeyStore
from identity.oauth.tokens import TokenService
from identity.passwords import Hasher, PasswordPolicy
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

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        secret_key = settings.resolved_secret_key()
        keys = KeyStore(KeyCipher(secret_key))
        clients = ClientCache()
        return cls(
            settings=settings,
            secret_key=secret_key,
            hasher=Hasher(
                settings.argon2_time_cost,
                settings.argon2_memory_cost,
                settings.argon2_parallelism,
            ),
            password_policy=PasswordPolicy(
                settings.password_min_length, settings.password_max_length
            ),
            links=LinkSigner(secret_key),
            mailer=Mailer(settings, secret_key),
            device_cookie=DeviceCookie(secret_key),
            throttle_policy=ThrottlePolicy(
                settings.login_throttle_free_attempts, settings.login_throttle_max_delay
            ),
            keys=keys,
            clients=clients,
            tokens=TokenService(settings, keys, clients),
        )


def runtime() -> Runtime:
    return current_app.extensions["identity"]  # type: ignore[no-any-return]
