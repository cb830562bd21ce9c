"""One typed settings object.

Values come, highest priority first, from keyword arguments (tests), environment variables
prefixed with ``IDENTITY_``, and an optional TOML file named by ``IDENTITY_CONFIG`` (default
``<instance>/identity.toml`` when it exists). Every field carries a description: it becomes
``docs/configuration.md`` (``identity check --docs``) and a test keeps the two in step.
"""

from __future__ import annotations

import difflib
import os
import secrets
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from identity.exceptions import ConfigError

ENV_PREFIX = "IDENTITY_"
# IDENTITY_* variables that are not settings: the configuration file, and the switches of
# this repository's test suite (a developer's shell may export them).
OTHER_VARIABLES = frozenset({"CONFIG", "TEST_DATABASE_URL", "REQUIRE_ALL_TESTS"})
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
MIN_SECRET_LENGTH = 32


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", validate_default=True, frozen=True
    )

    env: Literal["development", "production"] = Field(
        "development",
        description="`production` requires an explicit secret key and an https issuer "
        "(loopback excepted); `development` generates a secret key under the instance folder.",
    )
    instance_path: Path = Field(
        Path("instance"),
        description="Folder for the SQLite database, the generated secret key, the mail "
        "outbox and the optional identity.toml. A relative path is relative to the current "
        "directory of each command: set an absolute one (`identity check` prints the full "
        "path in use).",
    )
    database_url: str = Field(
        "",
        description="SQLAlchemy URL of the store: `sqlite:///path/to.db` or "
        "`postgresql://user@host:5432/db` (psycopg 3). Default: SQLite file "
        "`<instance>/identity.db`.",
    )
    database_pool_size: int = Field(
        5, ge=1, le=200, description="PostgreSQL connections kept per worker process."
    )
    issuer: str = Field(
        "http://127.0.0.1:8000",
        description="Public base URL of the server. Every link in mail and every protocol "
        "URL is built from it, never from the Host header.",
    )
    secret_key: SecretStr | None = Field(
        None,
        description="Secret (32+ characters) for signed links, cookies and key encryption. "
        "Every instance of one deployment must share it. Required in production.",
    )
    ratelimit_storage_url: str = Field(
        "memory://",
        description="Flask-Limiter storage: `memory://` for one process, "
        "`redis://host:6379/0` when several processes or hosts serve together.",
    )
    change_channel_url: str = Field(
        "",
        description="Where instances tell each other of revocations and changed keys, "
        "clients, users and roles: empty for PostgreSQL's LISTEN/NOTIFY (or polling on "
        "SQLite), or `redis://host:6379/0` for Redis pub/sub. Every instance must use the "
        "same channel.",
    )
    ratelimit_key_prefix: str = Field(
        "identity", description="Prefix of the rate-limit keys in the shared storage."
    )
    ratelimit_enabled: bool = Field(True, description="Turn the request rate limits off.")
    ratelimit_sign_in: str = Field(
        "10/minute;100/hour",
        description="Failed sign-in attempts per client IP (successful ones do not count).",
    )
    ratelimit_authorize: str = Field(
        "120/minute;1200/hour",
        description="Authorization requests per client IP that must be kept while the user "
        "signs in or consents (requests answered at once do not count).",
    )
    ratelimit_client: str = Field(
        "300/minute",
        description="Pushed authorization and device authorization requests per client "
        "(`client_id`), on top of the per-IP limit of the same endpoints.",
    )
    ratelimit_client_ip: str = Field(
        "60/minute",
        description="Pushed authorization and device authorization requests per client IP.",
    )
    ratelimit_registration: str = Field(
        "5/minute;50/hour", description="Registrations per client IP."
    )
    ratelimit_mail: str = Field(
        "5/minute;30/hour",
        description="Password-reset and verification-mail requests per client IP.",
    )
    registration: Literal["open", "invite", "closed"] = Field(
        "open",
        description="`open`: anyone may register; `invite`: only with an invitation "
        "(`identity invites create`); `closed`: no self-registration.",
    )
    mail_backend: Literal["smtp", "file", "console"] = Field(
        "file",
        description="`smtp` sends through the SMTP settings; `file` writes .eml files to "
        "`<instance>/outbox`; `console` logs messages (development only).",
    )
    mail_from: str = Field(
        "identity <noreply@localhost>", description="From address of outgoing mail."
    )
    smtp_host: str = Field("localhost", description="SMTP server host.")
    smtp_port: int = Field(25, ge=1, le=65535, description="SMTP server port.")
    smtp_username: str | None = Field(None, description="SMTP user name, when it asks.")
    smtp_password: SecretStr | None = Field(None, description="SMTP password.")
    smtp_security: Literal["none", "starttls", "tls"] = Field(
        "none", description="`starttls` upgrades the connection, `tls` connects with TLS."
    )
    smtp_timeout: float = Field(10.0, gt=0, description="Seconds before SMTP gives up.")
    argon2_time_cost: int = Field(2, ge=2, description="argon2id iterations (t).")
    argon2_memory_cost: int = Field(
        19456, ge=19456, description="argon2id memory in KiB (m); OWASP minimum 19 MiB."
    )
    argon2_parallelism: int = Field(1, ge=1, description="argon2id lanes (p).")
    password_min_length: int = Field(
        8, ge=8, le=64, description="Shortest password accepted (NIST SP 800-63B: 8+)."
    )
    password_max_length: int = Field(
        256,
        ge=64,
        le=4096,
        description="Longest password accepted; longer input is refused before hashing.",
    )
    session_idle_timeout: int = Field(
        1800, ge=60, description="Seconds of inactivity that end a login session."
    )
    session_absolute_timeout: int = Field(
        43200, ge=300, description="Seconds after sign-in that end a login session."
    )
    verification_link_lifetime: int = Field(
        86400, ge=300, description="Seconds an email-verification link stays valid."
    )
    reset_link_lifetime: int = Field(
        3600, ge=300, le=86400, description="Seconds a password-reset link stays valid."
    )
    invitation_lifetime: int = Field(
        7 * 86400, ge=3600, description="Default seconds an invitation stays valid."
    )
    login_throttle_free_attempts: int = Field(
        5,
        ge=1,
        description="Failed sign-ins for one email before growing delays start.",
    )
    login_throttle_max_delay: int = Field(
        900, ge=1, description="Longest delay, in seconds, between sign-in attempts."
    )
    mfa_required: bool = Field(
        False,
        description="Every user must sign in with a second factor; one without it sets up "
        "an authenticator app at the next sign-in, and cannot remove the last one.",
    )
    mfa_required_roles: str = Field(
        "",
        description="Comma-separated roles whose holders (globally, directly, through a "
        "group or an inherited role) must use a second factor, as `mfa_required` does for "
        "everyone. `admin` is a good start.",
    )

    admin_mfa_required: bool = Field(
        True,
        description="Console users (anyone holding one of identity's own permissions) must "
        "have signed in with a second factor to open `/admin`; one without a factor sets "
        "up an authenticator app first. Turn off only for a test instance.",
    )

    @property
    def mfa_roles(self) -> frozenset[str]:
        return frozenset(r.strip() for r in self.mfa_required_roles.split(",") if r.strip())

    trusted_proxies: int = Field(
        0,
        ge=0,
        le=5,
        description="Number of reverse proxies in front of the server whose "
        "X-Forwarded-For/-Proto headers are believed. 0 ignores those headers.",
    )
    max_content_length: int = Field(
        1024 * 1024, ge=1024, description="Largest request body accepted, in bytes."
    )
    access_token_lifetime: int = Field(
        600, ge=60, le=86400, description="Seconds an access token (JWT) stays valid."
    )
    id_token_lifetime: int = Field(
        3600, ge=60, le=86400, description="Seconds an ID token stays valid."
    )
    authorization_code_lifetime: int = Field(
        60, ge=10, le=600, description="Seconds an authorization code may be redeemed in."
    )
    refresh_token_idle_lifetime: int = Field(
        14 * 86400,
        ge=300,
        description="Seconds a refresh token stays valid unused; each refresh starts anew.",
    )
    refresh_token_absolute_lifetime: int = Field(
        30 * 86400,
        ge=300,
        description="Seconds after the first grant when a refresh-token family ends.",
    )
    refresh_token_grace_period: int = Field(
        0,
        ge=0,
        le=300,
        description="Seconds a rotated refresh token still works (concurrent refreshes); "
        "0 turns reuse into revocation of the whole family at once.",
    )
    require_pkce: bool = Field(
        True,
        description="Require PKCE (S256) from every client; public clients always need it.",
    )
    signing_alg: Literal["ES256", "RS256", "EdDSA"] = Field(
        "ES256", description="Algorithm of the active signing key created by `init`/`keys rotate`."
    )
    key_rotation_publish_ahead: int = Field(
        0,
        ge=0,
        description="Seconds a new signing key is published in the JWKS before it signs. "
        "Set it above the longest time clients cache the JWKS.",
    )
    device_code_lifetime: int = Field(
        600, ge=60, le=3600, description="Seconds a device authorization stays valid."
    )
    device_code_interval: int = Field(
        5, ge=1, le=60, description="Seconds a device must wait between token polls."
    )
    par_lifetime: int = Field(
        60, ge=10, le=600, description="Seconds a pushed authorization request stays valid."
    )
    dcr_initial_access_token: SecretStr | None = Field(
        None,
        description="Enables dynamic client registration (RFC 7591) for callers presenting "
        "this bearer token. Unset: registration is off.",
    )
    backchannel_logout_allow_private: bool = Field(
        False,
        description="Deliver back-channel logout tokens to loopback, private and link-local "
        "addresses, over plain http too (for development, tests and closed networks only).",
    )
    allow_private_jwks_uri: bool = Field(
        False,
        description="Allow fetching client `jwks_uri` from loopback, private and link-local "
        "addresses (for tests and closed networks only).",
    )
    purge_interval: int = Field(
        3600,
        ge=0,
        description="Seconds between deletions of expired codes, tokens and sessions by "
        "`serve` (0: never; run `identity purge` from cron instead).",
    )
    gdpr_cooling_off_days: int = Field(
        7,
        ge=0,
        le=90,
        description="Days between a person asking to delete their account and its erasure; "
        "meanwhile the account is disabled, and signing in again cancels the request.",
    )
    gdpr_export_link_hours: int = Field(
        24,
        ge=1,
        le=168,
        description="Hours a data export's single-use download link stays valid.",
    )
    retention_origins_days: int = Field(
        0,
        ge=0,
        description="Days after which IP addresses, user agents and emails in audit records "
        "and login sessions are removed by the purge (0: kept as long as the record).",
    )
    retention_sent_mail_days: int = Field(
        365,
        ge=0,
        description="Days the record of mail sent to a person (subject and time) is kept "
        "(0: kept as long as the account).",
    )
    retention_expired_grants_days: int = Field(
        1,
        ge=1,
        description="Days expired authorization codes, device codes and ended refresh-token "
        "families are kept before the purge deletes them.",
    )
    retention_inactive_warn_days: int = Field(
        0,
        ge=0,
        description="Days without a sign-in after which an account's owner is warned by mail "
        "that it will be erased (0: never).",
    )
    retention_inactive_erase_days: int = Field(
        0,
        ge=0,
        description="Days without a sign-in after which an account is erased, if its owner was "
        "warned at least `retention_inactive_warn_days` before (0: never).",
    )
    security_events_allow_private: bool = Field(
        False,
        description="Deliver Security Event Tokens (account purged) to loopback, private and "
        "link-local addresses, over plain http too (development, tests, closed networks).",
    )
    workers: int = Field(2, ge=1, le=64, description="Default worker processes of `serve`.")
    metrics_token: SecretStr | None = Field(
        None,
        description="Bearer token that lets a non-loopback scraper read `/metrics` "
        "(at least 32 characters). Unset: only loopback clients can; others get 404.",
    )
    metrics_dir: Path | None = Field(
        None,
        description="Folder where `serve`'s workers keep their Prometheus metrics "
        "(emptied of them at each start). Unset: `metrics` in the instance folder.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO",
        description="Level of the JSON log lines written to standard error. Commands other "
        "than `serve` write only warnings and errors there, unless `DEBUG` (then also the "
        "audit events, which the audit trail in the database keeps in any case).",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = _toml_file()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)

    @field_validator("issuer")
    @classmethod
    def _issuer_is_a_base_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http(s) URL")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("must not carry a query, fragment or user info")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _database_url_scheme(cls, value: str) -> str:
        if value and not value.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:")):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value

    @field_validator("secret_key")
    @classmethod
    def _secret_key_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_SECRET_LENGTH:
            raise ValueError("must be at least 32 characters")
        return value

    @field_validator("ratelimit_storage_url")
    @classmethod
    def _ratelimit_scheme(cls, value: str) -> str:
        if not value.startswith(("memory://", "redis://", "rediss://", "redis+sentinel://")):
            raise ValueError("must be memory:// or redis://...")
        return value

    @field_validator("change_channel_url")
    @classmethod
    def _channel_scheme(cls, value: str) -> str:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be empty (the database) or redis://...")
        return value

    @model_validator(mode="after")
    def _lifetimes_consistent(self) -> Settings:
        if self.refresh_token_idle_lifetime > self.refresh_token_absolute_lifetime:
            raise ValueError(
                "IDENTITY_REFRESH_TOKEN_IDLE_LIFETIME must not exceed "
                "IDENTITY_REFRESH_TOKEN_ABSOLUTE_LIFETIME"
            )
        if (
            self.dcr_initial_access_token is not None
            and len(self.dcr_initial_access_token.get_secret_value()) < MIN_SECRET_LENGTH
        ):
            raise ValueError("IDENTITY_DCR_INITIAL_ACCESS_TOKEN must be at least 32 characters")
        if (
            self.metrics_token is not None
            and len(self.metrics_token.get_secret_value()) < MIN_SECRET_LENGTH
        ):
            raise ValueError("IDENTITY_METRICS_TOKEN must be at least 32 characters")
        erase, warn = self.retention_inactive_erase_days, self.retention_inactive_warn_days
        if erase and (not warn or erase <= warn):
            raise ValueError(
                "IDENTITY_RETENTION_INACTIVE_ERASE_DAYS needs a smaller, non-zero "
                "IDENTITY_RETENTION_INACTIVE_WARN_DAYS: owners are warned before erasure"
            )
        return self

    @model_validator(mode="after")
    def _production_rules(self) -> Settings:
        if self.env != "production":
            return self
        if self.secret_key is None:
            raise ValueError("IDENTITY_SECRET_KEY is required when IDENTITY_ENV=production")
        if not self.issuer_is_https and urlsplit(self.issuer).hostname not in LOOPBACK_HOSTS:
            raise ValueError("IDENTITY_ISSUER must be https when IDENTITY_ENV=production")
        if self.mail_backend == "console":
            raise ValueError("IDENTITY_MAIL_BACKEND=console is for development only")
        return self

    # Derived values -------------------------------------------------------------------

    @property
    def issuer_is_https(self) -> bool:
        return self.issuer.startswith("https://")

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL in the form SQLAlchemy needs (psycopg 3 for PostgreSQL)."""
        url = self.database_url or f"sqlite:///{(self.instance_path / 'identity.db').resolve()}"
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
        return url

    @property
    def is_sqlite(self) -> bool:
        return self.sqlalchemy_url.startswith("sqlite:")

    def resolved_secret_key(self) -> str:
        """The configured secret, or in development one generated once under the instance."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        path = self.instance_path / "secret_key"
        try:
            if path.exists():
                return path.read_text().strip()
            self.ensure_instance_path()
            key = secrets.token_urlsafe(48)
            # O_EXCL: when two workers start together only one key is ever written.
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return path.read_text().strip()
            with os.fdopen(fd, "w") as handle:
                handle.write(key + "\n")
        except OSError as error:
            raise ConfigError(
                f"IDENTITY_INSTANCE_PATH: cannot keep the generated secret key in "
                f"{_shown(path)}: {_reason(error)} (or set IDENTITY_SECRET_KEY)"
            ) from None
        return key

    def ensure_instance_path(self) -> Path:
        """The instance folder, created when missing; a ConfigError naming the setting and
        the reason when it cannot be created or written to."""
        path = self.instance_path
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError(
                f"IDENTITY_INSTANCE_PATH: cannot create {_shown(path)}: {_reason(error)}"
            ) from None
        if not os.access(path, os.W_OK | os.X_OK):
            raise ConfigError(f"IDENTITY_INSTANCE_PATH: {_shown(path)} is not writable")
        return path


def _shown(path: Path) -> str:
    """A path as the operator should read it: absolute (a relative instance folder is
    relative to the current directory, which is easy to forget)."""
    try:
        return str(path.absolute())
    except OSError:  # the current directory itself is gone
        return str(path)


def _reason(error: OSError) -> str:
    return error.strerror or type(error).__name__


def _toml_file() -> Path | None:
    explicit = os.environ.get(ENV_PREFIX + "CONFIG")
    if explicit:
        return Path(explicit)
    default = Path(os.environ.get(ENV_PREFIX + "INSTANCE_PATH", "instance")) / "identity.toml"
    return default if default.exists() else None


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, turning any validation problem into a one-line ConfigError."""
    explicit = os.environ.get(ENV_PREFIX + "CONFIG")
    if explicit and not Path(explicit).is_file():
        raise ConfigError(f"IDENTITY_CONFIG: no such file: {explicit}")
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, overrides)) from None
    except ValueError as exc:  # a malformed TOML file
        raise ConfigError(f"IDENTITY_CONFIG: {exc}") from None


def _one_line(exc: ValidationError, overrides: Mapping[str, Any]) -> str:
    """Every problem on one line, each named where the operator wrote it: a value from the
    TOML file by the file and its key (and the variable that would override it), an unknown
    key of the file by the file, the key and the closest setting."""
    toml_file, toml_keys = _toml_keys()
    problems = []
    for error in exc.errors():
        location = [str(part) for part in error["loc"]]
        message = error["msg"].removeprefix("Value error, ")
        if not location:
            problems.append(message)
            continue
        key = location[0]
        variable = f"{ENV_PREFIX}{key.upper()}"
        from_file = (
            toml_file is not None
            and key in toml_keys
            and key not in overrides
            and variable not in _environment_names()
        )
        if from_file and error["type"] == "extra_forbidden":
            closest = _closest_setting(key)
            hint = f" (did you mean {closest!r}?)" if closest else ""
            problems.append(f"{toml_file}: unknown setting {key!r}{hint}")
        elif from_file:
            problems.append(f"{variable} ({key} in {toml_file}): {message}")
        else:
            problems.append(f"{variable}: {message}")
    return "invalid configuration: " + "; ".join(problems)


def _toml_keys() -> tuple[Path | None, set[str]]:
    """The TOML file in use and its top-level keys (read again only to name a problem)."""
    path = _toml_file()
    if path is None:
        return None, set()
    try:
        with path.open("rb") as handle:
            return path, set(tomllib.load(handle))
    except (OSError, ValueError):
        return path, set()


def _environment_names() -> set[str]:
    return {name.upper() for name in os.environ}


def _closest_setting(name: str) -> str | None:
    """The setting whose name is closest to ``name`` (a typo of it), if one is close."""
    close = difflib.get_close_matches(name.lower(), Settings.model_fields, n=1, cutoff=0.75)
    return close[0] if close else None


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """One warning per ``IDENTITY_*`` environment variable that is no setting: such a
    variable is ignored, and is most often a misspelt setting."""
    environ = os.environ if environ is None else environ
    warnings = []
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        suffix = name[len(ENV_PREFIX) :]
        if suffix.lower() in Settings.model_fields or suffix.upper() in OTHER_VARIABLES:
            continue
        closest = _closest_setting(suffix)
        hint = f" (did you mean {ENV_PREFIX}{closest.upper()}?)" if closest else ""
        warnings.append(f"{name} is not a setting and is ignored{hint}")
    return warnings


def settings_reference() -> str:
    """Markdown reference of every setting, written to docs/configuration.md."""
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated by `identity check --docs`; tests/unit/test_settings.py keeps it "
        "current. -->",
        "",
        "Every setting is read from an environment variable with the `IDENTITY_` prefix, or "
        'from a TOML file (lower-case names, e.g. `issuer = "https://id.example.com"`) '
        "named by `IDENTITY_CONFIG` (default `instance/identity.toml` when it exists). "
        "Environment variables win over the file. Invalid values stop start-up with one "
        "line naming the setting (and, for a value from the file, the file and its key); "
        "`identity check` validates without starting. An unknown key in the file stops "
        "start-up too, naming the file, the key and the closest setting; an `IDENTITY_*` "
        "variable that is no setting is ignored, with a warning naming the closest one.",
        "",
        "| Variable | Default | Description |",
        "|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        default = field.default
        if isinstance(default, Path):
            default = str(default)
        shown = "(none)" if default in (None, "") else f"`{default}`"
        lines.append(f"| `{ENV_PREFIX}{name.upper()}` | {shown} | {field.description} |")
    lines.append("")
    return "\n".join(lines)
