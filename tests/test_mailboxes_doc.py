"""docs/mailboxes.md: every config it shows loads, and logs in to real servers.

Each complete config (Microsoft 365, Google Workspace, self-hosted) is loaded as written,
then pointed at the loopback servers (host, port, CA and identity provider changed, every
other key as documented) and checked with ``mailflow doctor``: a token is had from the
provider's protocol, IMAP and SMTP accept the login.
"""

from __future__ import annotations

import json
import re
import ssl
import tomllib
from typing import Any

import pytest
from click.testing import CliRunner

from mailflow.cli import cli
from mailflow.config import load_config
from mailflow.localmail import PASSWORD, SmtpServer

from .conftest import ROOT

DOC = (ROOT / "docs" / "mailboxes.md").read_text()
MAILBOX = "mailflow@programme.example.org"


def blocks() -> dict[str, str]:
    """The TOML blocks under each level-2 heading, by heading (several joined by "\\n")."""
    found: dict[str, str] = {}
    for section in re.split(r"^## ", DOC, flags=re.M)[1:]:
        title = section.splitlines()[0].strip()
        texts = re.findall(r"```toml\n(.*?)```", section, flags=re.S)
        if texts:
            found[title] = "\n".join(texts)
    return found


def complete(title: str) -> str:
    [config] = [t for t in re.findall(r"```toml\n(.*?)```", DOC, flags=re.S)
                if "[addresses]" in t and t in blocks()[title]]  # fmt: skip
    return config


def toml(data: dict[str, Any], prefix: str = "") -> str:
    """A TOML writer for these configs: tables, sub-tables, strings, numbers, lists."""
    scalars, tables = [], []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append(toml(value, f"{prefix}{key}."))
        else:
            scalars.append(f"{key} = {json.dumps(value)}")
    head = [f"[{prefix[:-1]}]"] if prefix and scalars else []
    return "\n".join([*head, *scalars, "", *tables])


@pytest.fixture
def relay(localmail):
    started = []

    def make(**kwargs) -> SmtpServer:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(localmail.certificates.cert, localmail.certificates.key)
        server = SmtpServer(localmail.dovecot.lmtp_port, localmail.is_user, tls=context, **kwargs)
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def doctor(tmp_path, data, env) -> list[str]:
    data["mailflow"]["database"] = str(tmp_path / "mailflow.db")
    path = tmp_path / "mailflow.toml"
    path.write_text(toml(data))
    result = CliRunner().invoke(cli, ["-c", str(path), "doctor"], env=env)
    return result.output.splitlines()


def loopback(localmail, data, server) -> dict[str, Any]:
    ca = str(localmail.certificates.ca)
    data["imap"].update(host="127.0.0.1", port=localmail.dovecot.imaps_port, ca_file=ca)
    data["smtp"].update(host="127.0.0.1", port=server.port, ca_file=ca)
    return data


def test_the_doc_shows_the_three_setups():
    assert {"Microsoft 365", "Google Workspace", "Self-hosted Dovecot and Postfix"} <= set(blocks())


def test_microsoft_365(tmp_path, localmail, relay):
    text = complete("Microsoft 365")
    config = load_config(_write(tmp_path, text), {"MAILFLOW_OAUTH_CLIENT_SECRET": "x"})
    assert (config.imap.host, config.imap.port, config.smtp.port) == (
        "outlook.office365.com",
        993,
        587,
    )
    assert config.smtp.oauth2 is config.imap.oauth2 and config.security.verify_dkim
    data = tomllib.loads(text)
    source = data["imap"]["oauth2"]
    localmail.add_user(MAILBOX)
    localmail.identity.add_microsoft_app(source["tenant"], source["client_id"], "app", MAILBOX)
    server = relay(introspection_url=localmail.identity.introspection_url,
                   oauth_mechanisms=("XOAUTH2",))  # fmt: skip
    data = loopback(localmail, data, server)
    source.update(authority=localmail.identity.https_url, ca_file=str(localmail.certificates.ca))
    lines = doctor(tmp_path, data, {"MAILFLOW_OAUTH_CLIENT_SECRET": "app", "MAILFLOW_SECRET": "s"})
    assert any(x.startswith("ok   IMAP token: Microsoft identity platform") for x in lines)
    assert any(x.startswith(f"ok   IMAP: logged in as {MAILBOX}") for x in lines), lines
    assert any(x.startswith("ok   SMTP: ") for x in lines), lines


def test_google_workspace(tmp_path, localmail, relay):
    text = complete("Google Workspace")
    config = load_config(_write(tmp_path, text), {})
    assert config.imap.oauth2 is not None and config.imap.oauth2.subject == MAILBOX
    data = tomllib.loads(text)
    localmail.add_user(MAILBOX)
    key = localmail.identity.add_google_service_account(MAILBOX)
    (tmp_path / "google-key.json").write_text(json.dumps(key))
    server = relay(introspection_url=localmail.identity.introspection_url)
    data = loopback(localmail, data, server)
    data["imap"]["oauth2"]["ca_file"] = str(localmail.certificates.ca)
    env = {"MAILFLOW_GOOGLE_SERVICE_ACCOUNT": str(tmp_path / "google-key.json")}
    lines = doctor(tmp_path, data, env)
    assert any(x.startswith("ok   IMAP token: Google (service account acting as") for x in lines)
    assert any(x.startswith(f"ok   IMAP: logged in as {MAILBOX}") for x in lines), lines
    assert any(x.startswith("ok   SMTP: ") for x in lines), lines


def test_google_with_a_refresh_token_and_a_token_command(tmp_path):
    base = tomllib.loads(complete("Google Workspace"))
    partial = [t for t in blocks()["Google Workspace"].split("[imap.oauth2]") if "grant" in t]
    base["imap"]["oauth2"] = tomllib.loads(partial[0])
    env = {"MAILFLOW_OAUTH_CLIENT_SECRET": "x", "MAILFLOW_OAUTH_REFRESH_TOKEN": "1//y"}
    config = load_config(_write(tmp_path, toml(base)), env)
    assert config.imap.oauth2 is not None and config.imap.oauth2.grant == "refresh_token"
    config.require_secrets()
    command = re.search(r"```toml\n\[imap.oauth2\]\n(token_command = .*?)\n```", DOC, re.S)
    assert command is not None
    base["imap"]["oauth2"] = tomllib.loads(command.group(1))
    config = load_config(_write(tmp_path, toml(base)), {})
    assert config.imap.oauth2 is not None and config.imap.oauth2.provider == "command"


def test_self_hosted_with_passwords(tmp_path, localmail, relay):
    text = complete("Self-hosted Dovecot and Postfix")
    data = tomllib.loads(text)
    (tmp_path / "ca.pem").write_text("")  # the documented CA path, moved here
    for table in ("imap", "smtp"):
        data[table]["ca_file"] = str(tmp_path / "ca.pem")
    config = load_config(_write(tmp_path, toml(data)), {})
    assert config.imap.auth == config.smtp.auth == "password"
    localmail.add_user(MAILBOX)
    server = relay(auth=(MAILBOX, "relay-secret"))
    data = loopback(localmail, data, server)
    env = {"MAILFLOW_IMAP_PASSWORD": PASSWORD, "MAILFLOW_SMTP_PASSWORD": "relay-secret"}
    lines = doctor(tmp_path, data, env)
    assert any(x.startswith(f"ok   IMAP: logged in as {MAILBOX}") for x in lines), lines
    assert any(x.startswith(f"ok   SMTP: 127.0.0.1:{server.port} (starttls) answers; logged in")
               for x in lines), lines  # fmt: skip


def _write(tmp_path, text):
    path = tmp_path / "loaded.toml"
    path.write_text(text)
    (tmp_path / "roster.toml").touch()
    return path
