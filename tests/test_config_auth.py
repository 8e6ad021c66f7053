"""The config's login keys: ``auth``, the ``[imap.oauth2]`` token source, DKIM settings."""

from __future__ import annotations

import pytest

from mailflow.config import MICROSOFT_SCOPE, load_config
from mailflow.errors import ConfigError

from .test_config import MINIMAL, write

MICROSOFT = """
[imap.oauth2]
provider = "microsoft"
tenant = "contoso.onmicrosoft.com"
client_id = "0d5c7a5e-aaaa-bbbb-cccc-123456789abc"
"""


def oauth(tmp_path, text, env=None):
    body = MINIMAL.replace("[imap]\n", '[imap]\nauth = "oauth2"\n').replace(
        "[smtp]\n", '[smtp]\nauth = "oauth2"\n'
    )
    return load_config(write(tmp_path, body + text), env=env or {})


def test_microsoft_defaults_and_smtp_sharing_the_imap_source(tmp_path):
    config = oauth(tmp_path, MICROSOFT, {"MAILFLOW_OAUTH_CLIENT_SECRET": "s3cret"})
    source = config.imap.oauth2
    assert source is not None and source.provider == "microsoft"
    assert source.authority == "https://login.microsoftonline.com"
    assert source.scopes == (MICROSOFT_SCOPE,) and source.client_secret == "s3cret"
    assert config.smtp.oauth2 is source
    assert config.smtp.username == "mailflow@example.test"  # the mailbox the token is for
    assert "s3cret" not in repr(config)
    config.require_secrets()


def test_a_missing_client_secret_names_its_variable(tmp_path):
    config = oauth(
        tmp_path,
        MICROSOFT.replace("[imap.oauth2]", '[imap.oauth2]\nclient_secret_env = "APP_SECRET"'),
    )
    with pytest.raises(ConfigError, match=r"imap\.oauth2\.client_secret_env: expected the "
                       r"environment variable APP_SECRET to be set"):  # fmt: skip
        config.require_secrets()
    with pytest.raises(ConfigError, match="APP_SECRET"):  # what `mailflow ingest` checks
        config.imap.require_password()


def test_google_service_account_acts_as_the_imap_user(tmp_path):
    config = oauth(tmp_path, '[imap.oauth2]\nprovider = "google"\n',
                   {"MAILFLOW_GOOGLE_SERVICE_ACCOUNT": "/etc/mailflow/key.json"})  # fmt: skip
    source = config.imap.oauth2
    assert source is not None and source.grant == "service_account"
    assert source.subject == "mailflow@example.test"
    assert source.scopes == ("https://mail.google.com/",)
    config.require_secrets()


def test_a_token_command_as_a_string_or_a_list(tmp_path):
    one = oauth(tmp_path, "[imap.oauth2]\ntoken_command = \"oauth2ms --encode 'a b'\"\n")
    assert one.imap.oauth2 is not None
    assert one.imap.oauth2.token_command == ("oauth2ms", "--encode", "a b")
    two = oauth(tmp_path, '[imap.oauth2]\ntoken_command = ["/usr/bin/helper", "-x"]\n')
    assert two.imap.oauth2 is not None and two.imap.oauth2.token_command[0] == "/usr/bin/helper"
    two.require_secrets()  # a command needs no secret of mailflow's


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"imap\.oauth2: expected a table saying where tokens come from"),
        ('[imap.oauth2]\ntenant = "x"\n', r"imap\.oauth2\.provider: expected a value"),
        ('[imap.oauth2]\nprovider = "yahoo"\n', r"imap\.oauth2\.provider: expected one of"),
        (
            MICROSOFT + 'scope = "x"\n',
            r"imap\.oauth2\.scope: expected a known key \(did you "
            r"mean 'scopes'\?\)",
        ),
        (MICROSOFT + 'authority = "http://login.test"\n', r"authority: expected an https://"),
        (
            '[imap.oauth2]\nprovider = "google"\ntenant = "x"\n',
            r"imap\.oauth2\.tenant: "
            r"expected a known key",
        ),
        ("[imap.oauth2]\ntoken_command = []\n", r"token_command: expected a command line"),
        (
            '[imap.oauth2]\ntoken_command = "x"\nprovider = "google"\n',
            r"provider: expected "
            r"one of 'command'",
        ),
    ],
)
def test_oauth2_mistakes_name_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        oauth(tmp_path, text)


def test_an_oauth2_table_with_password_auth_is_a_mistake(tmp_path):
    with pytest.raises(ConfigError, match=r'imap\.auth: expected "oauth2" \(an \[oauth2\] table'):
        load_config(write(tmp_path, MINIMAL + MICROSOFT), env={})


def test_dkim_settings(tmp_path):
    text = MINIMAL + '[security]\nverify_dkim = true\ndns_server = "127.0.0.1:5353"\n'
    config = load_config(write(tmp_path, text), env={})
    assert config.security.verify_dkim and config.security.dns_server == "127.0.0.1:5353"
    wrong = text.replace("127.0.0.1:5353", "resolver.example.test")
    with pytest.raises(ConfigError, match=r"security\.dns_server: expected an IP address"):
        load_config(write(tmp_path, wrong), env={})
