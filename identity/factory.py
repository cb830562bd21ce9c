"""The composition root: the steps ``create_app`` runs, in order, and the ``Runtime`` they
share. Everything is wired here; nothing else imports this module (``create_app`` and the
`identity` command import it when they build an app or a runtime)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import lru_cache, partial
from inspect import iscoroutinefunction
from typing import Any

from flask import Flask

from identity import admin, api, audit, health, metrics, paths, telemetry
from identity.accounts import factors, passkey_views, privacy_views, session_views
from identity.accounts.throttle import DeviceCookie, ThrottlePolicy
from identity.accounts.views import bp as accounts_bp
from identity.auth.passkeys import Passkeys
from identity.auth.recovery import RecoveryCodes
from identity.auth.totp import TotpService
from identity.change_listener import ChangeListener, redis_publisher
from identity.changes import ChangeFeed, watch_sessions
from identity.database import configure_sqlite, engine_options, ensure_sqlite_folder
from identity.deliveries import SWEEP_INTERVAL as DELIVERIES_SWEEP
from identity.errors import register_error_handlers
from identity.extensions import (
    csrf,
    db,
    init_limiter,
)
from identity.links import LinkSigner
from identity.logs import configure_logging, setup_request_logging
from identity.mail import SWEEP_INTERVAL, Mailer
from identity.maintenance import purge, start_janitor
from identity.oauth import logout_views, oidc_views
from identity.oauth.authorization_server import OAuthServer, endpoint_urls
from identity.oauth.authorize import views as authorize_views
from identity.oauth.backchannel import BackchannelSender
from identity.oauth.clients import registration
from identity.oauth.clients.authentication import JwksCache, PrivateKeyJWT
from identity.oauth.clients.service import ClientCache
from identity.oauth.consents import views as consents_views
from identity.oauth.device import grant as device_grant
from identity.oauth.device import views as device_views
from identity.oauth.keys import KeyCipher, KeyStore
from identity.oauth.profiles import ProfileCache
from identity.oauth.security_events import SecurityEventSender
from identity.oauth.token import endpoints, grants
from identity.oauth.token import views as token_views
from identity.oauth.tokens import TokenService
from identity.passwords import Hasher, PasswordPolicy
from identity.privacy import jobs as privacy_jobs
from identity.privacy import retention
from identity.privacy.erasure import subject_hash
from identity.rbac.store import SnapshotCache
from identity.revocation import CLOCK_LEEWAY
from identity.revocation_state import RevocationState
from identity.runtime import Runtime, runtime
from identity.security import (
    setup_input_guard,
    setup_proxy,
    setup_request_id,
    setup_security_headers,
)
from identity.sessions import current_user, setup_login_sessions
from identity.settings import Settings
from identity.unit_of_work import rollback, setup_unit_of_work


@lru_cache(maxsize=1024)
def _is_async(func: Callable[..., Any]) -> bool:
    return iscoroutinefunction(func)


class IdentityFlask(Flask):
    """Flask, asking once per function whether it is a coroutine function.

    Flask's ``ensure_sync`` (a documented override point) runs ``inspect`` on every
    request hook and view at every request, about 1 µs each for some 18 of them per
    request. The answer never changes for a function, so it is remembered (bounded: the
    functions of ``after_this_request`` are new each request). identity has no async
    view; one would still be found and run as Flask runs it."""

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        return super().ensure_sync(func) if _is_async(func) else func


def make_flask(settings: Settings) -> Flask:
    configure_logging(settings.log_level)
    app = IdentityFlask(
        "identity",
        template_folder=str(paths.templates_dir()),
        static_folder=str(paths.PACKAGE / "static"),
        instance_path=str(settings.instance_path.resolve()),
    )
    https = settings.issuer_is_https
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_content_length,
        MAX_FORM_MEMORY_SIZE=min(settings.max_content_length, 512 * 1024),
        MAX_FORM_PARTS=200,
        # Flask's own signed cookie holds only the CSRF token and flash messages.
        SESSION_COOKIE_NAME="__Host-identity" if https else "identity",
        SESSION_COOKIE_SECURE=https,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_PATH="/",
        PREFERRED_URL_SCHEME="https" if https else "http",
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the Flask session
        WTF_CSRF_SSL_STRICT=https,
        RATELIMIT_STORAGE_URI=settings.ratelimit_storage_url,
        RATELIMIT_KEY_PREFIX=settings.ratelimit_key_prefix,
        RATELIMIT_ENABLED=settings.ratelimit_enabled,
        RATELIMIT_HEADERS_ENABLED=True,
        RATELIMIT_STRATEGY="moving-window",
        RATELIMIT_STORAGE_OPTIONS={"socket_connect_timeout": 2, "socket_timeout": 2}
        if settings.ratelimit_storage_url.startswith("redis")
        else {},
    )
    return app


def build_runtime(settings: Settings) -> Runtime:
    """The objects built once from the settings and shared by views, services and
    commands."""
    secret_key = settings.resolved_secret_key()
    feed = ChangeFeed()
    if settings.change_channel_url:
        feed.publisher = redis_publisher(settings.change_channel_url)
    keys = KeyStore(KeyCipher(secret_key), feed)
    clients = ClientCache(feed)
    rbac = SnapshotCache(feed)
    revocations = RevocationState(
        feed,
        partial(subject_hash, secret_key),
        settings.access_token_lifetime + CLOCK_LEEWAY,
    )
    return Runtime(
        settings=settings,
        secret_key=secret_key,
        hasher=Hasher(
            settings.argon2_time_cost, settings.argon2_memory_cost, settings.argon2_parallelism
        ),
        password_policy=PasswordPolicy(settings.password_min_length, settings.password_max_length),
        links=LinkSigner(secret_key),
        mailer=Mailer(settings, secret_key),
        device_cookie=DeviceCookie(secret_key),
        throttle_policy=ThrottlePolicy(
            settings.login_throttle_free_attempts, settings.login_throttle_max_delay
        ),
        keys=keys,
        clients=clients,
        tokens=TokenService(settings, keys, clients, rbac, revocations),
        profiles=ProfileCache(feed, revocations),
        jwks_cache=JwksCache(allow_private=settings.allow_private_jwks_uri),
        changes=feed,
        rbac=rbac,
        totp=TotpService(secret_key, settings.issuer),
        recovery_codes=RecoveryCodes(secret_key),
        passkeys=Passkeys(settings.issuer),
    )


def setup_runtime(app: Flask, settings: Settings) -> None:
    rt = build_runtime(settings)
    app.secret_key = rt.secret_key
    app.extensions["identity"] = rt
    rt.mailer.init_app(app)


def setup_extensions(app: Flask, settings: Settings) -> None:
    setup_database(app, settings)
    csrf.init_app(app)
    init_limiter(app)
    setup_unit_of_work(app)
    register_error_handlers(app, rollback)


def setup_request_basics(app: Flask, settings: Settings) -> None:
    """First, so that their hooks run before any other (CSRF's and the rate limiter's
    among them): every request is timed, gets its id and has its input checked, the ones
    a later hook rejects included."""
    setup_proxy(app, settings)
    setup_request_logging(app)
    metrics.setup_request_metrics(app)  # registered early: it runs after the later hooks
    audit.add_listener(telemetry.audited)  # sign-ins and refresh-token reuse, counted
    setup_request_id(app)
    setup_input_guard(app)


def setup_web_security(app: Flask, settings: Settings) -> None:
    setup_login_sessions(app, settings)
    setup_security_headers(app, settings)


def setup_oauth(app: Flask, settings: Settings) -> None:
    """The Authlib server with identity's grants, endpoints and client authentication."""
    authorization = OAuthServer()
    authorization.init_app(app)
    urls = endpoint_urls(settings.issuer)
    audiences = [
        settings.issuer,
        urls["token_endpoint"],
        urls["introspection_endpoint"],
        urls["revocation_endpoint"],
        urls["pushed_authorization_request_endpoint"],
        urls["device_authorization_endpoint"],
    ]
    authorization.register_client_auth_method(
        "private_key_jwt", PrivateKeyJWT(audiences, runtime_of(app).jwks_cache)
    )
    authorization.register_grant(
        grants.AuthorizationCodeGrant, [grants.S256CodeChallenge(required=True)]
    )
    authorization.register_grant(grants.RefreshTokenGrant)
    authorization.register_grant(grants.ClientCredentialsGrant)
    authorization.register_grant(device_grant.DeviceCodeGrant)
    authorization.register_endpoint(endpoints.IntrospectionEndpoint)
    authorization.register_endpoint(endpoints.RevocationEndpoint)
    authorization.register_endpoint(endpoints.DeviceAuthorizationEndpoint)
    app.extensions["identity.oauth"] = authorization


def setup_blueprints(app: Flask) -> None:
    app.register_blueprint(health.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(accounts_bp)
    app.register_blueprint(factors.bp)
    app.register_blueprint(session_views.bp)
    app.register_blueprint(passkey_views.bp)
    app.register_blueprint(authorize_views.bp)
    app.register_blueprint(token_views.bp)
    app.register_blueprint(oidc_views.bp)
    app.register_blueprint(logout_views.bp)
    app.register_blueprint(device_views.bp)
    app.register_blueprint(registration.bp)
    app.register_blueprint(consents_views.bp)
    app.register_blueprint(privacy_views.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(api.bp)
    csrf.exempt(api.bp)  # bearer callers; browser sessions only read (identity.api.auth)
    for name in authorize_views.SIGN_IN_BLUEPRINTS:  # their hook, not every request's
        hooks = app.before_request_funcs.setdefault(name, [])
        hooks.append(authorize_views.sign_in_forms_may_reach_the_client)

    @app.context_processor
    def _globals() -> dict[str, Any]:
        return {"current_user": current_user(), "registration": runtime().settings.registration}


def setup_database(app: Flask, settings: Settings) -> None:
    ensure_sqlite_folder(settings)
    app.config["SQLALCHEMY_DATABASE_URI"] = settings.sqlalchemy_url
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(settings)
    db.init_app(app)
    watch_sessions()  # every process hears of a disabled user or changed claims
    with app.app_context():
        if settings.is_sqlite:
            configure_sqlite(db.engine)
        telemetry.watch_pool(db.engine)


# A serving worker's background threads ------------------------------------------------


def start_worker_threads(app: Flask) -> None:
    """In each serving worker, after the fork: the caches hear of key and client changes,
    expired rows go every purge_interval, and mail is retried (or sent when the process
    that queued it died)."""
    rt = runtime_of(app)
    with app.app_context():
        engine = db.engine
    ChangeListener(rt.changes, engine, rt.settings.change_channel_url).start()

    def purge_once() -> None:
        grace = timedelta(days=rt.settings.retention_expired_grants_days)
        with app.app_context():
            purge(db.session(), rt.settings.session_idle_timeout, grace=grace)
            retention.apply(db.session(), rt)

    def sweep_once() -> None:
        with app.app_context():
            while rt.mailer.deliver_due(db.session()) > 0:
                pass  # a backlog goes out at once, a batch at a time

    senders = (
        BackchannelSender(rt.tokens, allow_private=rt.settings.backchannel_logout_allow_private),
        SecurityEventSender(rt.tokens, allow_private=rt.settings.security_events_allow_private),
    )

    def deliveries_sweep_once() -> None:
        """Logout tokens and security events for clients, a batch at a time."""
        with app.app_context():
            while sum(sender.deliver_due(db.session()) for sender in senders) > 0:
                pass

    start_janitor(rt.settings.purge_interval, purge_once)
    start_janitor(SWEEP_INTERVAL, sweep_once, name="mail_sweep")
    start_janitor(DELIVERIES_SWEEP, deliveries_sweep_once, name="deliveries_sweep")

    def privacy_jobs_once() -> None:
        """Data exports to build and erasures whose cooling-off ended."""
        with app.app_context():
            while privacy_jobs.run_due(db.session(), rt) > 0:
                pass

    start_janitor(privacy_jobs.SWEEP_INTERVAL, privacy_jobs_once, name="privacy_jobs")


def runtime_of(app: Flask) -> Runtime:
    return app.extensions["identity"]  # type: ignore[no-any-return]
