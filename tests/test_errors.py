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


def _site(p, tmp_path, edits):
    """The shipped workflows and templates, copied and edited, used by this programme."""
    import shutil

    from .conftest import ROOT

    for folder in ("workflows", "templates"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    for name, (old, new) in edits.items():
        path = tmp_path / name
        assert old in path.read_text(), name
        path.write_text(path.read_text().replace(old, new))
    text = p.config.path.read_text().replace(
        "[mailflow]\n",
        f'[mailflow]\nworkflows = "{tmp_path / "workflows"}"\n'
        f'templates = "{tmp_path / "templates"}"\n',
    )
    p.config.path.write_text(text)


def test_doctor_finds_each_problem_once_with_how_to_fix_it(programme, tmp_path):
    p = programme({"alpha": 1})
    _site(p, tmp_path, {
        "templates/retro/request.fr.txt.j2": ("Besoins :", "Envies :"),
        "workflows/retro.toml": ('at = "14:00"', 'at = "16:00"'),
        "workflows/gazette.toml": ('deadline = "12:00"', 'deadline = "17:00"'),
    })  # fmt: skip
    output = p.run("doctor").output
    fails = [line for line in output.splitlines() if line.startswith("FAIL")]
    assert len(fails) == 3, output
    assert any("retro/request.fr" in f and "needs" in f and "would not be" in f for f in fails)
    assert any("'reminder-2'" in f and "16:00" in f and "digest" in f for f in fails)
    assert any("gazette" in f and "deadline 17:00" in f for f in fails)


def test_doctor_reports_a_workflow_error_once_under_workflows(programme, tmp_path):
    p = programme({"alpha": 1})
    _site(p, tmp_path, {"workflows/retro.toml": ('at = "09:00"', 'at = "9h"')})
    output = p.run("doctor").output
    assert output.count('step "request".at') == 1
    assert "FAIL workflows: " in output and "FAIL templates: not checked" in output
    assert "roster: 1 team," in output  # the roster is judged on its own


def test_doctor_sees_mail_to_the_alias_reach_the_mailbox(programme):
    p = programme({"alpha": 1})
    alias, a0 = p.config.addresses.alias, p.defis["alpha"][0]
    p.localmail.send(
        f"From: {a0}\r\nTo: {alias}\r\nSubject: Bonjour\r\n\r\nUne question.\r\n".encode(),
        [p.shared], a0,
    )  # fmt: skip
    p.wait_shared(1)
    output = p.run("doctor").output
    assert f"ok   alias: mail to {alias} reaches {p.shared}" in output


def test_status_of_a_workflow_that_follows_the_events_points_to_events(make_config):
    config = make_config()
    for name in ("events", "standup"):
        result = run(config, "status", "--workflow", name)
        assert result.exit_code == 2, result.output
        assert f"the occurrences of {name} are the events: `mailflow events`" in result.output
        assert isinstance(result.exception, SystemExit)  # a usage error, not a crash


def test_serve_without_the_archive_extra_says_what_to_install(make_config, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # what a wheel without the extra has
    result = run(make_config(), "serve")
    assert result.exit_code == 1, result.output
    assert "pip install 'mailflow[archive]'" in result.output
    assert isinstance(result.exception, SystemExit)
