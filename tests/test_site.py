"""``mailflow init``: a complete site, never an overwritten file; doctor tells copies apart.

The copies are compared with the shipped files through the manifest ``init`` writes; an
upgrade is simulated by a manifest recording other hashes than the shipped files have.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailflow.admin.site import MANIFEST, differences, digest, init_site, shipped_files
from mailflow.cli import cli
from mailflow.config import load_config, shipped

from .conftest import ENV, ROOT

REQUEST = "templates/retro/request.fr.txt.j2"


def init(*args: str) -> str:
    result = CliRunner().invoke(cli, ["init", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_the_defaults_are_the_checkout_folders_in_an_editable_install():
    assert shipped("workflows") == ROOT / "workflows"
    assert shipped("templates") == ROOT / "templates"
    assert "retro.toml" in shipped_files("workflows")


def test_init_makes_a_complete_site(tmp_path):
    site = tmp_path / "site"
    output = init(str(site))
    assert "added: mailflow.toml, roster.toml, planning.toml, secrets.env" in output
    config = load_config(site / "mailflow.toml", env={})
    assert config.workflows_dir == site / "workflows"
    assert config.templates_dir == site / "templates"
    assert config.roster == site / "roster.toml"
    assert config.events.planning == site / "planning.toml"
    assert config.database == site / "mailflow.db"
    assert not config.rehearsal
    text = (site / "mailflow.toml").read_text()
    assert re.search(r"^# rehearsal = true +# .*tick --at", text, re.M), "rehearsal not explained"
    for kind in ("workflows", "templates"):
        for name in shipped_files(kind):
            copy, original = site / kind / name, shipped(kind) / name
            assert copy.read_bytes() == original.read_bytes(), name
    recorded = json.loads((site / MANIFEST).read_text())["files"]
    assert recorded[REQUEST] == digest(
        (shipped("templates") / REQUEST.split("/", 1)[1]).read_bytes()
    )
    assert len(recorded) == len(shipped_files("workflows")) + len(shipped_files("templates"))


def test_the_example_roster_and_planning_load_and_mail_nobody_real(tmp_path):
    from mailflow.programme.events import load_planning
    from mailflow.programme.roster import load_roster

    init(str(tmp_path))
    roster = load_roster(tmp_path / "roster.toml")
    addresses = [m.address for d in roster.defis for m in d.members]
    addresses += [s.address for s in roster.staff]
    assert roster.defis and roster.staff
    assert all(a.endswith(".test") for a in addresses), addresses
    config = load_config(tmp_path / "mailflow.toml", env={})
    # The planning's example is commented out: no invitation to anyone until real events.
    assert load_planning(tmp_path / "planning.toml", config.timezone, "programme.test") == []
    assert "[[event]]" in (tmp_path / "planning.toml").read_text()


def test_the_secrets_file_is_private_and_lists_what_the_config_names(tmp_path):
    init(str(tmp_path))
    secrets = tmp_path / "secrets.env"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    lines = secrets.read_text().splitlines()
    assignments = [line for line in lines if not line.startswith("#")]
    assert assignments == [
        "MAILFLOW_IMAP_PASSWORD=", "MAILFLOW_SMTP_PASSWORD=", "MAILFLOW_SECRET=",
        "MAILFLOW_ARCHIVE_PASSWORDS=", "MAILFLOW_ARCHIVE_SECRET=",
    ]  # fmt: skip
    for line in assignments:
        assert lines[lines.index(line) - 1].startswith("# "), f"no comment before {line}"
    config = tomllib.loads((tmp_path / "mailflow.toml").read_text())
    named = {config["imap"]["password_env"], config["smtp"]["password_env"]}
    named.add(config["security"]["secret_env"])
    archive = load_config(tmp_path / "mailflow.toml", env={}).archive  # [archive] is optional
    assert archive is not None
    named |= {archive.passwords_env, archive.secret_env}
    assert {line.split("=", 1)[0] for line in assignments} == named


def test_the_secrets_file_follows_a_kept_config(tmp_path):
    (tmp_path / "mailflow.toml").write_text(
        '[imap]\npassword_env = "PROG_IMAP"\n[smtp]\npassword_env = "PROG_SMTP"\n'
        '[archive]\npasswords_env = "PROG_ARCHIVE"\n'
    )
    output = init(str(tmp_path))
    assert "kept as it was: mailflow.toml" in output
    lines = (tmp_path / "secrets.env").read_text().splitlines()
    names = [line.split("=")[0] for line in lines if not line.startswith("#")]
    assert names == [
        "PROG_IMAP", "PROG_SMTP", "MAILFLOW_SECRET", "PROG_ARCHIVE", "MAILFLOW_ARCHIVE_SECRET"
    ]  # fmt: skip


def test_init_with_the_service_database(tmp_path):
    init(str(tmp_path), "--database", "/var/lib/mailflow/eig/mailflow.db")
    config = load_config(tmp_path / "mailflow.toml", env={})
    assert config.database == Path("/var/lib/mailflow/eig/mailflow.db")
    output = init(str(tmp_path), "--database", "/elsewhere.db")
    assert "--database was not applied" in output
    assert load_config(tmp_path / "mailflow.toml", env={}).database == config.database


def test_init_again_keeps_what_is_there_and_adds_what_is_missing(tmp_path):
    init(str(tmp_path))
    edited = tmp_path / REQUEST
    edited.write_text(edited.read_text() + "\nUne ligne ajoutée par l'équipe.\n")
    (tmp_path / "templates/retro/ack.fr.txt.j2").unlink()
    (tmp_path / "roster.toml").write_text("# our roster\n")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    output = init(str(tmp_path))
    assert "added: templates/retro/ack.fr.txt.j2\n" in output
    assert "kept as it was: mailflow.toml, roster.toml, planning.toml, secrets.env, " in output
    kept = len(shipped_files("templates")) - 1  # all but the one re-added
    assert f"templates/ ({kept} files)" in output
    for path, data in before.items():
        if path.name != MANIFEST:
            assert path.read_bytes() == data, f"{path} was overwritten"
    assert (tmp_path / "templates/retro/ack.fr.txt.j2").exists()


def _record(site: Path, name: str, data: bytes | None) -> None:
    """Make the manifest say that mailflow shipped ``data`` as ``name`` (None: did not ship it)."""
    manifest = json.loads((site / MANIFEST).read_text())
    if data is None:
        manifest["files"].pop(name)
    else:
        manifest["files"][name] = digest(data)
    (site / MANIFEST).write_text(json.dumps(manifest))


def _differences(site: Path) -> dict[str, str]:
    found = differences(site, {"workflows": site / "workflows", "templates": site / "templates"})
    assert found is not None
    return {d.path: d.detail for d in found}


def test_copies_as_shipped_differ_in_nothing(tmp_path):
    init_site(tmp_path)
    assert _differences(tmp_path) == {}
    assert differences(tmp_path / "elsewhere", {}) is None  # no manifest: not a site


def test_every_way_a_copy_can_differ_after_an_upgrade(tmp_path):
    init_site(tmp_path)
    old = b"Subject: old wording\n\nold body\n"
    # Edited by the staff, unchanged upstream.
    (tmp_path / REQUEST).write_text("Subject: ours\n\nour body\n")
    # Unchanged by the staff, changed upstream: the copy is what the old version shipped.
    (tmp_path / "templates/retro/ack.fr.txt.j2").write_bytes(old)
    _record(tmp_path, "templates/retro/ack.fr.txt.j2", old)
    # Changed on both sides.
    (tmp_path / "templates/retro/needs.fr.txt.j2").write_text("Subject: ours\n\nneeds\n")
    _record(tmp_path, "templates/retro/needs.fr.txt.j2", old)
    # New upstream: neither recorded nor copied.
    (tmp_path / "workflows/standup.toml").unlink()
    _record(tmp_path, "workflows/standup.toml", None)
    # Deleted by the staff.
    (tmp_path / "workflows/gazette.toml").unlink()
    # No longer shipped.
    (tmp_path / "templates/retro/old.fr.txt.j2").write_bytes(old)
    _record(tmp_path, "templates/retro/old.fr.txt.j2", old)
    # A copy made by hand, before any manifest, that differs.
    (tmp_path / "templates/retro/ack.en.txt.j2").write_text("Subject: hand-made\n\n")
    _record(tmp_path, "templates/retro/ack.en.txt.j2", None)
    found = _differences(tmp_path)
    shipped_templates = shipped("templates")
    assert found == {
        REQUEST: "modified by you",
        "templates/retro/ack.fr.txt.j2": "changed in the new version: delete your copy and run "
        f"`mailflow init {tmp_path}` to take the new one",
        "templates/retro/needs.fr.txt.j2": "modified by you and changed in the new version: "
        f"compare with {shipped_templates / 'retro/needs.fr.txt.j2'}",
        "workflows/standup.toml": "new in this version, not in your copy: run "
        f"`mailflow init {tmp_path}` to add it",
        "workflows/gazette.toml": "missing from your copy: run "
        f"`mailflow init {tmp_path}` to add it",
        "templates/retro/old.fr.txt.j2": "no longer shipped",
        "templates/retro/ack.en.txt.j2": "differs from the shipped file: compare with "
        f"{shipped_templates / 'retro/ack.en.txt.j2'}",
    }


def test_doctor_says_a_line_per_copy_that_differs(programme):
    p = programme({"alpha": 1})
    site = p.config.path.parent
    init_site(site)  # keeps the config and roster; adds the copies and the manifest
    copies = '[mailflow]\nworkflows = "workflows"\ntemplates = "templates"\n'
    p.config.path.write_text(p.config.path.read_text().replace("[mailflow]\n", copies))
    result = p.run("doctor")
    assert result.exit_code == 0, result.output
    assert "ok   copies of the shipped files: as shipped\n" in result.output
    (site / REQUEST).write_text((site / REQUEST).read_text().replace("Bonjour", "Salut"))
    old = b"Subject: old\n\nold\n"
    (site / "templates/retro/ack.fr.txt.j2").write_bytes(old)
    _record(site, "templates/retro/ack.fr.txt.j2", old)
    result = p.run("doctor")
    assert result.exit_code == 0, result.output
    assert f"ok   {REQUEST}: modified by you\n" in result.output
    assert "ok   templates/retro/ack.fr.txt.j2: changed in the new version: " in result.output
    assert "copies of the shipped files" not in result.output
    (site / MANIFEST).write_text("{not json")
    result = p.run("doctor")
    assert result.exit_code == 1
    assert f"FAIL copies of the shipped files: {site / MANIFEST} is damaged" in result.output


def test_a_config_on_the_shipped_folders_has_no_copies_to_compare(programme):
    p = programme({"alpha": 1})
    init_site(p.config.path.parent)
    result = p.run("doctor")
    assert result.exit_code == 0, result.output
    assert "copies of the shipped files" not in result.output
    assert "modified by you" not in result.output


def _modules_loaded(*args: str) -> set[str]:
    """The modules a ``mailflow`` command imports (its output is printed before them)."""
    code = (
        "import sys\nfrom mailflow.cli import cli\n"
        f"try:\n    cli({list(args)!r})\nexcept SystemExit:\n    pass\n"
        "print(' '.join(sorted(sys.modules)))"
    )
    env = {k: v for k, v in os.environ.items() if k != "MAILFLOW_CONFIG"} | ENV
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    return set(result.stdout.split("\n")[-2].split())


def test_help_loads_only_click_and_the_command_line():
    """``mailflow --help`` imports no engine, database, mail or template module."""
    loaded = _modules_loaded("--help")
    heavy = {"sqlite3", "sqlite_utils", "jinja2", "imapclient", "icalendar", "holidays", "ssl"}
    ours = {m for m in loaded if m.startswith("mailflow.")}
    assert not heavy & loaded, heavy & loaded
    assert ours <= {"mailflow.cli", "mailflow.errors"}, ours


def test_status_reads_the_kept_holidays_and_no_mail_module(tmp_path):
    """``mailflow status`` on a site that ran once imports neither the holidays package
    (its years are kept in the database) nor what reads or writes mail."""
    init(str(tmp_path / "site"))
    config = str(tmp_path / "site" / "mailflow.toml")
    first = _modules_loaded("-c", config, "status")
    assert "holidays" in first  # the first run computes the years and keeps them
    loaded = _modules_loaded("-c", config, "status")
    heavy = {"holidays", "sqlite_utils", "imapclient", "icalendar", "dkim", "dns", "ssl",
             "smtplib", "email.mime", "email.parser", "mailflow.receiving.parse"}  # fmt: skip
    assert not heavy & loaded, heavy & loaded
    assert "jinja2" in loaded  # the report is a template


def test_init_gives_the_modes_the_service_needs_whatever_the_umask(tmp_path):
    previous = os.umask(0o077)
    try:
        init(str(tmp_path / "etc" / "eig"))
    finally:
        os.umask(previous)
    site = tmp_path / "etc" / "eig"
    modes = {p.relative_to(tmp_path).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in [
        tmp_path / "etc", site, site / "templates/retro", *site.rglob("*.*")
    ]}  # fmt: skip
    private = {name for name, m in modes.items() if m not in (0o755, 0o644)}
    assert private == {"etc/eig/secrets.env"}, private
    assert modes["etc/eig/secrets.env"] == 0o600
    assert modes["etc/eig/.mailflow-shipped.json"] == 0o644


def test_a_site_that_cannot_be_written_is_one_clear_line(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "workflows").write_text("a file where a folder goes")
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "site")])
    assert result.exit_code == 1
    assert result.output.startswith(f"mailflow: cannot make the site in {tmp_path / 'site'}: ")
    assert "Traceback" not in result.output and result.output.count("\n") == 1


@pytest.mark.starts_servers
def test_stand_in_servers_give_a_new_site_its_mailboxes(tmp_path):
    """A trial without the organisation's servers: every address of the site gets a mailbox
    on loopback, and the settings printed are those that reach it."""
    import signal
    import smtplib

    from imapclient import IMAPClient

    from mailflow.programme.roster import load_roster

    init(str(tmp_path / "site"))
    config = load_config(tmp_path / "site/mailflow.toml")
    servers = subprocess.Popen(
        [sys.executable, "-m", "mailflow.localmail", "-c", str(config.path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert servers.stdout is not None
        first = servers.stdout.readline()
        found = re.search(
            r"IMAP on 127\.0\.0\.1:(\d+), SMTP on 127\.0\.0\.1:(\d+), (\d+) mai", first
        )
        assert found, first
        imap_port, smtp_port, boxes = map(int, found.groups())
        assert config.roster is not None
        member = load_roster(config.roster).defis[0].members[0].address
        with smtplib.SMTP("127.0.0.1", smtp_port) as smtp:
            smtp.sendmail(config.addresses.sender, [member], b"Subject: essai\r\n\r\nBonjour\r\n")
        client = IMAPClient("127.0.0.1", port=imap_port, ssl=False, timeout=10)
        client.login(member, "secret")
        assert client.select_folder("INBOX")[b"EXISTS"] == 1
        client.logout()
        assert boxes >= 5
    finally:
        servers.send_signal(signal.SIGTERM)
        output, _ = servers.communicate(timeout=30)
    assert servers.returncode == 0, output
