"""Errors that say how to fix them, against the real servers: wrong ports, wrong passwords."""

from __future__ import annotations

from click.testing import CliRunner

from mailflow.cli import cli

from .conftest import ENV


def run(config, *args, env=None):
    return CliRunner().invoke(cli, ["-c", str(config.path), *args], env=env or ENV)


def test_an_smtp_port_given_as_the_imap_port_is_named(make_config, localmail):
    config = make_config(imap={"port": localmail.smtp_port})
    result = run(config, "ingest")
    assert result.exit_code == 1
    assert "answers as an SMTP server, not IMAP" in result.output and "[imap] port" in result.output
    assert "220" not in result.output  # no raw greeting


def test_an_imap_port_given_as_the_smtp_port_is_named(make_config, localmail):
    config = make_config(smtp={"port": localmail.imap_port})
    result = run(config, "doctor")
    assert "answers as an IMAP server, not SMTP" in result.output and "[smtp] port" in result.output
    assert "CAPABILITY" not in result.output


def test_a_refused_login_names_the_variable_holding_the_password(make_config):
    config = make_config()
    result = run(config, "ingest", env={**ENV, "MAILFLOW_IMAP_PASSWORD": "wrong"})
    assert result.exit_code == 1
    assert "login refused" in result.output and "$MAILFLOW_IMAP_PASSWORD" in result.output


def test_tls_spoken_to_a_plain_port_says_which_setting_to_change(make_config):
    config = make_config(imap={"security": "tls"})
    result = run(config, "ingest")
    assert result.exit_code == 1
    assert "does not speak TLS on this port" in result.output and "starttls" in result.output
