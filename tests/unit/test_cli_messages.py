"""What the commands say when something is wrong: one line, naming the setting, the file or
the database, and what to do; never a password."""

from __future__ import annotations

import os
from pathlib import Path

import click
import pytest

from identity.exceptions import ConfigError, InvalidInput
from identity.settings import Settings, load_settings, unknown_variables


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    """No IDENTITY_* variable or instance/identity.toml from the machine leaks in."""
    for name in list(os.environ):
        if name.startswith("IDENTITY_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def config_error(**values) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(**values)
    assert "\n" not in caught.value.message
    return caught.value.message


# Misspelt settings --------------------------------------------------------------------------


def test_unknown_variables_name_the_closest_setting():
    """Each IDENTITY_* variable that is no setting gets one warning, with the setting it
    most likely meant when one is close."""
    warnings = unknown_variables(
        {
            "IDENTITY_REGISTRATON": "closed",
            "IDENTITY_LOGLEVEL": "DEBUG",
            "IDENTITY_FROBNICATE": "1",
            "IDENTITY_ISSUER": "https://id.example.org",
            "identity_registration": "open",  # read case-insensitively: a setting
            "IDENTITY_CONFIG": "x.toml",
            "IDENTITY_TEST_DATABASE_URL": "postgresql://",
            "HOME": "/root",
        }
    )
    assert warnings == [
        "IDENTITY_FROBNICATE is not a setting and is ignored",
        "IDENTITY_LOGLEVEL is not a setting and is ignored (did you mean IDENTITY_LOG_LEVEL?)",
        "IDENTITY_REGISTRATON is not a setting and is ignored "
        "(did you mean IDENTITY_REGISTRATION?)",
    ]


def test_a_typo_in_the_toml_file_names_the_file_and_the_key(monkeypatch, tmp_path):
    """An unknown key of the TOML file is named by the file and the key, with the closest
    setting; not as an IDENTITY_* variable the operator never wrote."""
    path = tmp_path / "identity.toml"
    path.write_text('registraton = "closed"\n')
    monkeypatch.setenv("IDENTITY_CONFIG", str(path))
    message = config_error()
    assert message == (
        f"invalid configuration: {path}: unknown setting 'registraton' "
        "(did you mean 'registration'?)"
    )


def test_a_bad_value_in_the_toml_file_names_the_file_the_key_and_the_variable(
    monkeypatch, tmp_path
):
    """A bad value from the file names where it was written, and the variable that would
    override it; the same value from the environment names the variable only."""
    path = tmp_path / "identity.toml"
    path.write_text("password_min_length = 4\n")
    monkeypatch.setenv("IDENTITY_CONFIG", str(path))
    assert config_error() == (
        f"invalid configuration: IDENTITY_PASSWORD_MIN_LENGTH (password_min_length in {path}): "
        "Input should be greater than or equal to 8"
    )
    monkeypatch.setenv("IDENTITY_PASSWORD_MIN_LENGTH", "5")
    assert config_error().startswith("invalid configuration: IDENTITY_PASSWORD_MIN_LENGTH: ")


def test_the_default_toml_file_is_named_too(monkeypatch, tmp_path):
    """The instance folder's identity.toml, read without IDENTITY_CONFIG, is named as well."""
    (tmp_path / "instance").mkdir()
    (tmp_path / "instance" / "identity.toml").write_text("isuer = 'https://x.example'\n")
    message = config_error()
    assert "identity.toml: unknown setting 'isuer' (did you mean 'issuer'?)" in message


# The instance folder ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("folder", "reason"),
    [("/dev/null/x", "Not a directory"), ("/proc/self/status/x", "Not a directory")],
)
def test_an_instance_folder_that_cannot_be_created_is_one_line(folder, reason):
    """Creating the folder fails with one ConfigError naming the setting and the reason."""
    settings = Settings(instance_path=Path(folder))
    with pytest.raises(ConfigError) as caught:
        settings.ensure_instance_path()
    assert caught.value.message == f"IDENTITY_INSTANCE_PATH: cannot create {folder}: {reason}"
    with pytest.raises(ConfigError) as again:
        settings.resolved_secret_key()  # development: the generated key lives there
    assert again.value.message == caught.value.message


def test_an_unwritable_secret_key_file_is_one_line(tmp_path):
    """A generated secret key that cannot be written names the setting, the reason and the
    way out (IDENTITY_SECRET_KEY)."""
    (tmp_path / "secret_key").mkdir()  # a folder where the key file should be
    with pytest.raises(ConfigError) as caught:
        Settings(instance_path=tmp_path).resolved_secret_key()
    message = caught.value.message
    assert message.startswith(
        f"IDENTITY_INSTANCE_PATH: cannot keep the generated secret key in {tmp_path}/secret_key: "
    )
    assert message.endswith("(or set IDENTITY_SECRET_KEY)")


def test_a_relative_instance_folder_is_named_in_full(tmp_path):
    """A command that finds no database names the full path it looked at, and says that
    the folder is relative to the current directory; it creates nothing."""
    from identity.cli.context import refuse_missing_database

    with pytest.raises(click.ClickException) as caught:
        refuse_missing_database(Settings())
    assert caught.value.message == (
        f"no database at {tmp_path.resolve() / 'instance' / 'identity.db'} "
        "(IDENTITY_INSTANCE_PATH=instance, relative to the current directory; the folder "
        f"{tmp_path.resolve() / 'instance'} does not exist); run `identity init` first"
    )
    assert not (tmp_path / "instance").exists()


def test_a_file_in_the_way_of_the_instance_folder_is_named(tmp_path):
    """A path below a file names the setting and the file."""
    from identity.cli.context import refuse_missing_database

    (tmp_path / "file").write_text("")
    with pytest.raises(click.ClickException) as caught:
        refuse_missing_database(Settings(instance_path=tmp_path / "file" / "instance"))
    assert caught.value.message == (
        f"IDENTITY_INSTANCE_PATH: cannot be created: {tmp_path / 'file'} is not a folder"
    )


# Database errors --------------------------------------------------------------------------


def test_database_errors_are_one_line_without_the_password():
    """The driver's message, first line only, with the URL's password masked should the
    driver repeat it."""
    from sqlalchemy.exc import OperationalError

    from identity.cli.context import database_error, database_label

    settings = Settings(database_url="postgresql://app:pa55word@db.example:5432/identity")
    error = OperationalError(
        "SELECT 1", {}, Exception("connection to db failed for pa55word\nDETAIL: more")
    )
    assert database_error(error, settings) == "connection to db failed for ***"
    assert database_label(settings) == "postgresql://app:***@db.example:5432/identity"


# Redirect URIs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "instead"),
    [
        ("http://localhost:3000/cb", "http://127.0.0.1:3000/cb"),
        ("http://localhost/cb?x=1", "http://127.0.0.1/cb?x=1"),
    ],
)
def test_localhost_is_refused_naming_the_loopback_address(uri, instead):
    """RFC 8252 section 8.3: `localhost` stays refused, and the message says what to use."""
    from identity.oauth.clients.metadata import check_redirect_uri

    with pytest.raises(InvalidInput) as caught:
        check_redirect_uri(uri)
    assert caught.value.message == (
        "redirect URI must use the loopback address, not localhost (RFC 8252 section 8.3): "
        f"use {instead} instead of {uri}"
    )
    assert check_redirect_uri(instead) == instead
