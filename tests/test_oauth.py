"""OAuth2 logins against real servers: Dovecot's oauth2 passdb and an SMTP relay that accept
XOAUTH2 and OAUTHBEARER, both asking the loopback identity provider about each token.

The built-in providers get their tokens from that provider's token endpoints, which speak
the Microsoft identity platform's client-credentials grant and Google's service account and
refresh-token grants: MSAL and google-auth run unmodified, pointed at it.
"""

from __future__ import annotations

import json
import ssl
import sys
import time
import uuid

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from mailflow import oauth
from mailflow.errors import MailServerError
from mailflow.localmail import SmtpServer
from mailflow.receiving import imap

from .conftest import ENV
from .test_retro import at

TENANT = "programme-tenant"
SECRET = ENV["MAILFLOW_OAUTH_CLIENT_SECRET"]


@pytest.fixture
def app():
    """A client id of its own for each test (the identity provider lives for the session)."""
    return str(uuid.uuid4())


@pytest.fixture
def relay(localmail):
    """``relay()``: an SMTP relay requiring STARTTLS and a token (XOAUTH2 alone by default,
    as Microsoft 365's), delivering into the loopback Dovecot."""
    started = []

    def make(mechanisms=("XOAUTH2",)) -> SmtpServer:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(localmail.certificates.cert, localmail.certificates.key)
        server = SmtpServer(
            localmail.dovecot.lmtp_port, localmail.is_user, tls=context,
            introspection_url=localmail.identity.introspection_url, oauth_mechanisms=mechanisms,
        )  # fmt: skip
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def by_token(localmail, server, oauth2, **more):
    """Config overrides: IMAP over implicit TLS and the relay over STARTTLS, both by token."""
    ca = str(localmail.certificates.ca)
    return {
        "imap": {"port": localmail.dovecot.imaps_port, "security": "tls", "ca_file": ca,
                 "auth": "oauth2"},
        "smtp": {"port": server.port, "security": "starttls", "ca_file": ca, "auth": "oauth2"},
        "imap.oauth2": oauth2,
        **more,
    }  # fmt: skip


def microsoft(localmail, app):
    return {
        "provider": "microsoft", "tenant": TENANT, "client_id": app,
        "authority": localmail.identity.https_url, "ca_file": str(localmail.certificates.ca),
    }  # fmt: skip


def granted(programme, localmail, server, app, lifetime=3600):
    """A programme whose shared mailbox a Microsoft app may read and send as."""
    p = programme({"alpha": 1}, **by_token(localmail, server, microsoft(localmail, app)))
    localmail.identity.add_microsoft_app(TENANT, app, SECRET, p.shared, lifetime)
    return p


def grants(localmail, app):
    return [grant for client, grant in localmail.identity.requests if client == app]


def reply(p, text="Victoires :\nle pilote tourne"):
    a0 = p.defis["alpha"][0]
    request = p.localmail.fetch(a0)[0]
    p.mutt(a0, "Alice", request, text)
    p.wait_shared(1)


def test_microsoft_app_reads_and_sends_with_client_credentials(programme, localmail, relay, app):
    server = relay()
    p = granted(programme, localmail, server, app)
    assert "sent 1" in p.tick(at("09:00")).output
    assert len(p.inbox(p.defis["alpha"][0])) == 1
    reply(p)
    assert "ingested 1 new messages" in p.tick(at("10:00")).output
    # Both servers took the same token: one grant for IMAP and SMTP, two ticks.
    assert grants(localmail, app) == ["client_credentials"]
    assert set(server.handler.logins) == {("XOAUTH2", p.shared)}


def test_a_token_near_its_expiry_is_replaced_before_login(programme, localmail, relay, app):
    server = relay()
    p = granted(programme, localmail, server, app, lifetime=3)
    p.tick(at("09:00"))
    assert grants(localmail, app) == ["client_credentials"]
    time.sleep(1.6)  # past half its life: replaced, though the server would still take it
    p.tick(at("09:05"))
    assert grants(localmail, app) == ["client_credentials"] * 2
    [_, second] = localmail.identity.tokens_of(p.shared)
    assert localmail.identity.introspect(second)["active"]


def test_a_token_the_server_says_expired_is_refreshed(programme, localmail, relay, app):
    server = relay()
    p = granted(programme, localmail, server, app)
    assert "sent 1" in p.tick(at("09:00")).output
    [token] = localmail.identity.tokens_of(p.shared)
    localmail.identity.expire(token)  # expired early, as after a clock skew or a policy change
    reply(p)
    result = p.tick(at("10:00"))
    assert result.exit_code == 0 and "ingested 1 new messages" in result.output
    assert grants(localmail, app) == ["client_credentials"] * 2


def test_a_revoked_app_is_a_clear_error_naming_the_provider(programme, localmail, relay, app):
    server = relay()
    p = granted(programme, localmail, server, app)
    p.tick(at("09:00"))
    localmail.identity.disable(app)  # its tokens are revoked and it gets no new ones
    result = p.run("tick", "--at", at("12:00"))
    assert result.exit_code == 1
    line = next(x for x in result.output.splitlines() if x.startswith("error: the mailbox"))
    assert f"Microsoft identity platform (tenant {TENANT}, app {app})" in line
    assert "AADSTS700016" in line and "check [imap.oauth2] tenant, client_id" in line
    assert "Traceback" not in result.output


def test_a_wrong_client_secret_names_the_variable(programme, localmail, relay, app):
    server = relay()
    p = programme({"alpha": 1}, **by_token(localmail, server, microsoft(localmail, app)))
    localmail.identity.add_microsoft_app(TENANT, app, "the-real-secret", p.shared)
    result = p.run("tick", "--at", at("09:00"))
    assert result.exit_code == 1
    assert "invalid_client (AADSTS7000215: Invalid client secret provided.)" in result.output
    assert "$MAILFLOW_OAUTH_CLIENT_SECRET" in result.output
    assert "1 en attente d'envoi" in p.run("status", "--week", "2026-W48").output


def test_an_app_without_access_to_the_mailbox_is_refused_by_the_server(
    programme, localmail, relay, new_address, app
):
    server = relay()
    p = programme({"alpha": 1}, **by_token(localmail, server, microsoft(localmail, app)))
    localmail.identity.add_microsoft_app(TENANT, app, SECRET, new_address("other"))
    result = p.run("tick", "--at", at("09:00"))
    assert result.exit_code == 1
    assert "the server refused the OAuth2 token (OAUTHBEARER) from Microsoft" in result.output
    assert "IMAP.AccessAsApp" in result.output and "Add-MailboxPermission" in result.output
    assert "SMTP.SendAsApp" in result.output  # the relay refused it too: the mail waits
    # Each server: refused, then refused again with a fresh token; never more than that.
    assert grants(localmail, app) == ["client_credentials"] * 3


def test_google_service_account_with_domain_wide_delegation(
    programme, localmail, relay, monkeypatch
):
    server = relay(mechanisms=("XOAUTH2", "OAUTHBEARER"))
    google = {"provider": "google", "ca_file": str(localmail.certificates.ca)}
    p = programme({"alpha": 1}, **by_token(localmail, server, google))
    key = localmail.identity.add_google_service_account(p.shared)
    monkeypatch.setenv("MAILFLOW_GOOGLE_SERVICE_ACCOUNT", json.dumps(key))
    assert "sent 1" in p.tick(at("09:00")).output
    reply(p)
    assert "ingested 1 new messages" in p.tick(at("10:00")).output
    assert set(server.handler.logins) == {("OAUTHBEARER", p.shared)}  # offered: preferred


def test_google_service_account_without_delegation(programme, localmail, relay, monkeypatch):
    server = relay()
    google = {"provider": "google", "ca_file": str(localmail.certificates.ca)}
    p = programme({"alpha": 1}, **by_token(localmail, server, google))
    key = localmail.identity.add_google_service_account(p.shared, delegated=False)
    path = p.config.path.parent / "key.json"
    path.write_text(json.dumps(key))
    monkeypatch.setenv("MAILFLOW_GOOGLE_SERVICE_ACCOUNT", str(path))  # its path works too
    result = p.run("tick", "--at", at("09:00"))
    assert result.exit_code == 1
    assert f"Google (service account acting as {p.shared}) refused" in result.output
    assert "domain-wide delegation" in result.output


def test_google_refresh_token(programme, localmail, relay, monkeypatch):
    server = relay()
    google = {
        "provider": "google", "grant": "refresh_token", "client_id": "web.apps.test",
        "token_uri": localmail.identity.google_token_uri,
        "ca_file": str(localmail.certificates.ca),
    }  # fmt: skip
    p = programme({"alpha": 1}, **by_token(localmail, server, google))
    refresh = localmail.identity.add_google_refresh_token("web.apps.test", SECRET, p.shared)
    monkeypatch.setenv("MAILFLOW_OAUTH_REFRESH_TOKEN", refresh)
    assert "sent 1" in p.tick(at("09:00")).output
    localmail.identity.disable("web.apps.test")  # the user revoked the grant
    result = p.run("tick", "--at", at("12:00"))
    assert result.exit_code == 1
    assert "invalid_grant (Token has been expired or revoked.)" in result.output
    assert "$MAILFLOW_OAUTH_REFRESH_TOKEN" in result.output


def test_a_token_command_for_imap_and_smtp(programme, localmail, relay, tmp_path):
    server = relay()
    printed = tmp_path / "token"
    command = [sys.executable, "-c", f"print(open({str(printed)!r}).read())"]
    p = programme({"alpha": 1}, **by_token(localmail, server, {"token_command": command}))
    printed.write_text(localmail.identity.issue(p.shared, 3600))
    assert "sent 1" in p.tick(at("09:00")).output
    # A revoked token the command keeps printing: refused twice, then said plainly.
    localmail.identity.revoke(printed.read_text())
    result = p.run("tick", "--at", at("12:00"))
    assert result.exit_code == 1
    assert "the server refused the OAuth2 token (OAUTHBEARER) from the token command" in (
        result.output
    )
    assert "check the token that [imap.oauth2] token_command prints" in result.output
    # A new token printed: it works again, without restarting anything.
    printed.write_text(localmail.identity.issue(p.shared, 3600))
    assert p.run("tick", "--at", at("12:05")).exit_code == 0


def test_a_failing_token_command_is_one_line(make_config, localmail, tmp_path):
    script = tmp_path / "token.sh"
    script.write_text("#!/bin/sh\necho 'refresh token expired, run: helper --authorize' >&2\n"
                      "exit 3\n")  # fmt: skip
    script.chmod(0o755)
    config = make_config(imap={"auth": "oauth2"}, **{"imap.oauth2": {"token_command": str(script)}})
    with pytest.raises(MailServerError) as refused:
        imap.connect(config.imap)
    assert str(refused.value) == (
        f"the token command {str(script)!r} failed (exit 3: refresh token expired, run: helper "
        "--authorize): run it by hand to see why"
    )


def test_xoauth2_on_imap_too(new_address, localmail):
    user = new_address()
    token = localmail.identity.issue(user, 60)
    with IMAPClient("127.0.0.1", port=localmail.imap_port, ssl=False) as client:
        imap.oauth_login(client, "XOAUTH2", user, token)
        assert client.select_folder("INBOX")[b"EXISTS"] == 0
    with (
        IMAPClient("127.0.0.1", port=localmail.imap_port, ssl=False) as client,
        pytest.raises(LoginError),
    ):
        imap.oauth_login(client, "XOAUTH2", user, "not-a-token")


def test_doctor_checks_the_whole_chain(programme, localmail, relay, app):
    server = relay()
    p = granted(programme, localmail, server, app)
    lines = p.run("doctor").output.splitlines()
    assert "ok   secrets: $MAILFLOW_OAUTH_CLIENT_SECRET, $MAILFLOW_SECRET set" in lines
    source = f"Microsoft identity platform (tenant {TENANT}, app {app})"
    assert f"ok   IMAP token: {source} gives a token, valid for 59 more minutes" in lines
    assert any(x.startswith(f"ok   IMAP: logged in as {p.shared}") for x in lines)
    assert any(x.startswith("ok   SMTP: 127.0.0.1") for x in lines)
    assert not any(x.startswith("ok   SMTP token") for x in lines)  # the same source: once
    localmail.identity.disable(app)
    oauth.forget()
    result = p.run("doctor")
    lines = result.output.splitlines()
    assert result.exit_code == 1
    assert any(x.startswith(f"FAIL IMAP token: {source} refused") for x in lines)
    assert "FAIL IMAP: not checked: fix the token source first" in lines
    assert "FAIL SMTP: not checked: fix the token source first" in lines
