"""The config loader: frozen values, secrets from the environment, errors naming the key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mailflow.config import load_config
from mailflow.errors import ConfigError

MINIMAL = """
[imap]
host = "imap.example.test"
username = "mailflow@example.test"
[smtp]
host = "smtp.example.test"
[addresses]
from = "mailflow@example.test"
alias = "equipe@example.test"
cohort = "promo@example.test"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mailflow.toml"
    path.write_text(text)
    return path


def test_defaults_and_relative_paths(tmp_path):
    config = load_config(write(tmp_path, MINIMAL), env={})
    assert config.timezone.key == "Europe/Paris"
    assert config.database == tmp_path / "mailflow.db"
    assert config.imap.port == 993 and config.imap.security == "tls"
    assert config.imap.max_message_size == 25 * 1024 * 1024
    assert config.smtp.port == 587
    assert config.addresses.message_id_domain == "example.test"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.imap.host = "other"  # type: ignore[misc]


def test_secrets_come_from_the_environment_only(tmp_path):
    path = write(tmp_path, MINIMAL)
    config = load_config(path, env={"MAILFLOW_IMAP_PASSWORD": "s3cret"})
    assert config.imap.require_password() == "s3cret"
    assert "s3cret" not in repr(config)
    with pytest.raises(ConfigError, match=r"imap\.password_env.*MAILFLOW_IMAP_PASSWORD"):
        load_config(path, env={}).imap.require_password()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("[imap]", '[imap]\nport = "abc"'), r"imap\.port: expected an integer"),
        (("[imap]", "[imap]\nport = 70000"), r"imap\.port: expected an integer between 1"),
        (("[imap]", '[imap]\nsecurity = "ssl"'), r"imap\.security: expected one of 'tls'"),
        (
            ("[imap]", '[imap]\nmax_message_size = "big"'),
            r"imap\.max_message_size: expected a size",
        ),
        (
            ("[imap]", "[imap]\nhots = 1"),
            r"imap\.hots: expected a known key \(did you mean 'host'\?\)",
        ),
        (('from = "mailflow@example.test"', 'from = "not an address"'), r"addresses\.from"),
        (
            ('host = "smtp.example.test"', ""),
            r"smtp\.host: expected a value \(the key is missing\)",
        ),
        (
            ("[smtp]", '[mailflow]\ntimezone = "Mars/Base"\n[smtp]'),
            r"mailflow\.timezone: expected an IANA",
        ),
        (("[smtp]", "[unknown]\n[smtp]"), r"unknown: expected a known key"),
        (
            ('host = "imap.example.test"', 'hots = "imap.example.test"'),
            r"imap\.host: expected a value \(the key is missing; is 'hots' a misspelling of it\?\)",
        ),
        (
            ("[addresses]", "[adresses]"),
            r"addresses: expected a value \(the key is missing; is 'adresses' a misspelling",
        ),
        (('from = "mailflow@example.test"', 'from = "x"'), r"expected an email address such as"),
        (("[imap]", '[imap]\npassword_env = "1X"'), r"expected an environment variable name"),
    ],
)
def test_wrong_values_name_the_key(tmp_path, change, message):
    old, new = change
    path = write(tmp_path, MINIMAL.replace(old, new, 1))
    with pytest.raises(ConfigError, match=message) as error:
        load_config(path, env={})
    assert str(path) in str(error.value)


def test_syntax_error_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="valid TOML"):
        load_config(write(tmp_path, "[imap\nhost="), env={})
    with pytest.raises(ConfigError, match="mailflow init"):
        load_config(tmp_path / "absent.toml", env={})


def test_the_example_written_by_init_loads(tmp_path):
    from mailflow.admin.site import init_site

    init_site(tmp_path)
    config = load_config(tmp_path / "mailflow.toml", env={})
    assert config.addresses.alias.startswith("equipe@")
    assert config.templates_dir == tmp_path / "templates" and config.language == "fr"


def test_the_language_must_be_one_of_the_templates(tmp_path):
    expected = r"mailflow\.language: expected a language of the templates: en, fr, got 'de'"
    with pytest.raises(ConfigError, match=expected):
        load_config(write(tmp_path, '[mailflow]\nlanguage = "de"\n' + MINIMAL), env={})
