"""Settings validation: every bad value stops start-up with one line naming the setting."""

from __future__ import annotations

import os
import stat

import pytest
from pydantic import ValidationError

from identity.errors import ConfigError
from identity.settings import Settings, load_settings, settings_reference

SECRET = "s" * 40


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    """No IDENTITY_* variable or instance/identity.toml from the machine leaks in."""
    for name in list(os.environ):
        if name.startswith("IDENTITY_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def config_error(**values):
    with pytest.raises(ConfigError) as caught:
        load_settings(**values)
    message = caught.value.message
    assert "\n" not in message
    assert message.startswith(("invalid configuration: ", "IDENTITY_CONFIG: "))
    return message


def test_defaults_are_valid(tmp_path):
    """The defaults describe a working development server."""
    settings = load_settings(instance_path=tmp_path)
    assert settings.env == "development"
    assert settings.issuer == "http://127.0.0.1:8000"
    assert settings.issuer_is_https is False
    assert settings.registration == "open"
    assert settings.sqlalchemy_url == f"sqlite:///{(tmp_path / 'identity.db').resolve()}"


def test_issuer_trailing_slash_is_dropped():
    """The issuer is stored without a trailing slash."""
    assert Settings(issuer="https://id.example.org/").issuer == "https://id.example.org"
    assert Settings(issuer="https://id.example.org/").issuer_is_https is True


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"issuer": "ftp://id.example.org"}, "IDENTITY_ISSUER: must be an absolute http(s) URL"),
        ({"issuer": "id.example.org"}, "IDENTITY_ISSUER: must be an absolute http(s) URL"),
        ({"issuer": "https://id.example.org/?a=1"}, "IDENTITY_ISSUER: must not carry a query"),
        ({"issuer": "https://u:p@id.example.org"}, "IDENTITY_ISSUER: must not carry a query"),
        ({"secret_key": "short"}, "IDENTITY_SECRET_KEY: must be at least 32 characters"),
        ({"database_url": "mysql://db"}, "IDENTITY_DATABASE_URL: must start with sqlite:///"),
        ({"ratelimit_storage_url": "memcached://x"}, "IDENTITY_RATELIMIT_STORAGE_URL: must be"),
        ({"password_min_length": 7}, "IDENTITY_PASSWORD_MIN_LENGTH: "),
        ({"argon2_memory_cost": 1024}, "IDENTITY_ARGON2_MEMORY_COST: "),
        ({"session_idle_timeout": 10}, "IDENTITY_SESSION_IDLE_TIMEOUT: "),
        ({"registration": "maybe"}, "IDENTITY_REGISTRATION: "),
        ({"trusted_proxies": -1}, "IDENTITY_TRUSTED_PROXIES: "),
        ({"no_such_setting": 1}, "IDENTITY_NO_SUCH_SETTING: "),
    ],
)
def test_bad_values_give_one_line_naming_the_setting(values, expected):
    """Each invalid value yields a one-line ConfigError that names its variable."""
    assert expected in config_error(**values)


def test_several_problems_stay_on_one_line():
    """Two bad settings are both named, on one line."""
    message = config_error(issuer="nope", secret_key="short")
    assert "IDENTITY_ISSUER" in message and "IDENTITY_SECRET_KEY" in message


def test_environment_values_are_read_and_checked(monkeypatch):
    """IDENTITY_* variables are read; a bad one is named in the error."""
    monkeypatch.setenv("IDENTITY_ISSUER", "https://env.example.org")
    assert load_settings().issuer == "https://env.example.org"
    assert load_settings(issuer="https://kw.example.org").issuer == "https://kw.example.org"
    monkeypatch.setenv("IDENTITY_SESSION_IDLE_TIMEOUT", "half an hour")
    assert "IDENTITY_SESSION_IDLE_TIMEOUT" in config_error()


def test_production_requires_a_secret_key():
    """Production without a secret key stops with a clear line."""
    message = config_error(env="production", issuer="https://id.example.org")
    assert "IDENTITY_SECRET_KEY is required when IDENTITY_ENV=production" in message


def test_production_requires_https_except_on_loopback():
    """Production refuses a plain-http public issuer but allows loopback."""
    message = config_error(env="production", secret_key=SECRET, issuer="http://id.example.org")
    assert "IDENTITY_ISSUER must be https" in message
    assert load_settings(env="production", secret_key=SECRET, issuer="http://localhost:8000")


def test_production_refuses_the_console_mail_backend():
    """Console mail (which logs links) is refused in production."""
    message = config_error(
        env="production", secret_key=SECRET, issuer="https://id.example.org", mail_backend="console"
    )
    assert "IDENTITY_MAIL_BACKEND=console is for development only" in message


def test_toml_file_is_read_and_environment_wins(monkeypatch, tmp_path):
    """Values come from IDENTITY_CONFIG's TOML file, below environment variables."""
    path = tmp_path / "identity.toml"
    path.write_text('issuer = "https://toml.example.org"\nregistration = "invite"\n')
    monkeypatch.setenv("IDENTITY_CONFIG", str(path))
    settings = load_settings()
    assert settings.issuer == "https://toml.example.org"
    assert settings.registration == "invite"
    monkeypatch.setenv("IDENTITY_REGISTRATION", "closed")
    assert load_settings().registration == "closed"


def test_missing_config_file_is_named(monkeypatch, tmp_path):
    """IDENTITY_CONFIG naming no file stops with that path."""
    monkeypatch.setenv("IDENTITY_CONFIG", str(tmp_path / "missing.toml"))
    assert "IDENTITY_CONFIG: no such file" in config_error()


def test_malformed_toml_is_one_line(monkeypatch, tmp_path):
    """A syntax error in the TOML file is reported on one line naming IDENTITY_CONFIG."""
    path = tmp_path / "identity.toml"
    path.write_text("issuer = \n[[[")
    monkeypatch.setenv("IDENTITY_CONFIG", str(path))
    assert config_error().startswith("IDENTITY_CONFIG: ")


def test_bad_value_in_toml_is_named(monkeypatch, tmp_path):
    """A bad value in the file names the setting like any other."""
    path = tmp_path / "identity.toml"
    path.write_text("password_min_length = 4\n")
    monkeypatch.setenv("IDENTITY_CONFIG", str(path))
    assert "IDENTITY_PASSWORD_MIN_LENGTH" in config_error()


def test_settings_are_frozen():
    """Settings cannot be changed after start-up."""
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.issuer = "https://other.example.org"  # type: ignore[misc]


def test_postgresql_urls_use_psycopg3():
    """postgresql:// URLs are handed to SQLAlchemy as postgresql+psycopg://."""
    settings = Settings(database_url="postgresql://user@db:5432/identity")
    assert settings.sqlalchemy_url == "postgresql+psycopg://user@db:5432/identity"
    assert settings.is_sqlite is False


def test_development_secret_key_is_generated_once_and_private(tmp_path):
    """Without a configured key, one is generated, kept 0600, and reused."""
    settings = Settings(instance_path=tmp_path / "instance")
    key = settings.resolved_secret_key()
    assert len(key) >= 48
    path = tmp_path / "instance" / "secret_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Settings(instance_path=tmp_path / "instance").resolved_secret_key() == key


def test_configured_secret_key_wins(tmp_path):
    """A configured secret key is used as is and nothing is written."""
    settings = Settings(instance_path=tmp_path, secret_key=SECRET)
    assert settings.resolved_secret_key() == SECRET
    assert not (tmp_path / "secret_key").exists()


def test_secret_key_is_not_shown_in_repr():
    """The secret key is masked when settings are printed."""
    assert SECRET not in repr(Settings(secret_key=SECRET))


def test_reference_lists_every_setting_with_a_description():
    """The generated reference documents every field."""
    reference = settings_reference()
    for name, field in Settings.model_fields.items():
        assert f"`IDENTITY_{name.upper()}`" in reference
        assert field.description
