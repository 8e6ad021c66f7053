"""mailflow as installed software: the wheel in a fresh environment, a site, the service's users.

The wheel is built from a copy of this checkout's files (as a clone has them) and
installed with Debian's own ``python3 -m venv`` outside the checkout, once per session,
exactly as the README's "Install it for real" does; its dependencies come from PyPI.
The service is played as systemd would run it, without a running systemd: the unit's
own lines give the command, the secrets file, the state directory, its mode and the
umask, and the daemon runs as an unprivileged uid (``setpriv``), as do the staff.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from mailflow.localmail import PASSWORD, LocalMail, clients

from .conftest import ROOT

pytestmark = pytest.mark.wheel

SYSTEM_PYTHON = Path("/usr/bin/python3")  # Debian's: what `python3 -m venv` is, as root
# The unit's user and group mailflow, and a staff member in that group, by number: the
# test creates no account on this machine.
SERVICE_UID = SERVICE_GID = 61_001
STAFF_UID = 61_002
STRANGER_UID = 61_003
FRIDAY = "2026-12-04"  # a Friday without a holiday: the retrospective's requests at 09:00


def check(cmd: list[str | Path], **kwargs: object) -> str:
    """Run a command; its output, or an assertion error that shows it."""
    result = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, check=False, timeout=900,
        **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip
    assert result.returncode == 0, (
        f"{cmd} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout


@dataclass
class Installed:
    root: Path  # a scratch folder every user can traverse
    source: Path  # the copy of the checkout the wheel was built from
    venv: Path
    wheel: Path

    def command(self) -> Path:
        return self.venv / "bin" / "mailflow"


def _copy_checkout(target: Path) -> None:
    """The files a clone has (tracked, or new and not ignored), without .venv or build/."""
    listed = check(["git", "-C", ROOT, "ls-files", "-z", "-co", "--exclude-standard"])
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def readme_commands() -> list[list[str]]:
    """The shell blocks of the README's "Install it for real": its install commands."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Install it for real") :]
    section = section[: section.index("\n## ", 1)]
    return [b.strip().splitlines() for b in re.findall(r"```sh\n(.*?)```", section, re.S)]


# What needs a running systemd (or changes this machine's accounts): the tests verify the
# unit file and play what systemd does with it instead.
NOT_RUN_HERE = (
    "install -m 644 systemd/mailflow@.service ",
    "systemctl ",
    "journalctl ",
    "usermod ",
)


class Readme:
    """Runs the README's install commands, their paths and users mapped to this test's."""

    run: ClassVar[set[str]] = set()  # over the session: the build runs once, in a fixture

    def __init__(self, paths: dict[str, str]) -> None:
        self.paths = paths

    def line(self, start: str) -> str:
        (found,) = [c for block in readme_commands() for c in block if c.startswith(start)]
        return found

    def command(self, start: str) -> str:
        line = self.line(start)
        self.run.add(line)
        for text, here in self.paths.items():
            line = line.replace(text, here)
        return line

    def __call__(self, start: str, **kwargs: object) -> str:
        return check(["sh", "-c", self.command(start)], **kwargs)

    def all_run(self, block: int) -> bool:
        """Every command of a block was run, but for comments and what needs systemd."""
        commands = [c for c in readme_commands()[block] if not c.startswith(("#", *NOT_RUN_HERE))]
        return set(commands) <= self.run


@pytest.fixture(scope="session")
def installed() -> Iterator[Installed]:
    if not SYSTEM_PYTHON.exists():
        pytest.fail(f"{SYSTEM_PYTHON} is missing: run `bash .ci/setup`", pytrace=False)
    root = Path(tempfile.mkdtemp(prefix="mailflow-install-"))
    root.chmod(0o755)
    try:
        source = root / "src"
        _copy_checkout(source)
        venv = root / "venv"
        readme = Readme({"python3 -m venv": f"{SYSTEM_PYTHON} -m venv", "/opt/mailflow": str(venv)})
        # In the clone, umask 022 as in a root shell; pip as configured on this machine.
        for start in (
            "python3 -m venv",
            "/opt/mailflow/bin/pip wheel",
            "/opt/mailflow/bin/pip install",
        ):
            readme(start, cwd=source, umask=0o022)
        (wheel,) = (source / "dist").glob("mailflow-*.whl")
        yield Installed(root, source, venv, wheel)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def shipped_in_repository() -> dict[str, bytes]:
    found = {}
    for kind in ("workflows", "templates"):
        for path in (ROOT / kind).rglob("*"):
            if path.is_file():
                found[f"mailflow/shipped/{path.relative_to(ROOT).as_posix()}"] = path.read_bytes()
    return found


def shipped_in_wheel(wheel: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as z:
        return {n: z.read(n) for n in z.namelist() if n.startswith("mailflow/shipped/")}


def test_the_wheel_ships_the_workflows_and_templates(installed):
    expected = shipped_in_repository()
    assert len(expected) > 40
    assert shipped_in_wheel(installed.wheel) == expected
    python = installed.venv / "bin/python"
    code = "import mailflow.config as c; print(c.__file__); print(c.shipped('templates'))"
    module, where = check([python, "-c", code], cwd=installed.root, env=BASE_ENV).split()
    assert Path(module).is_relative_to(installed.venv), module
    site_packages = installed.venv / "lib"
    assert Path(where).is_relative_to(site_packages), where
    assert Path(where, "retro/request.fr.txt.j2").is_file()


def test_the_sdist_has_them_too_and_builds_the_same_wheel(installed, tmp_path):
    check([sys.executable, "-m", "build", "--sdist", "--outdir", tmp_path, installed.source])
    (sdist,) = tmp_path.glob("mailflow-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert {"setup.py", "MANIFEST.in", "workflows/retro.toml", "systemd/mailflow@.service"} <= names
    assert "templates/retro/request.fr.txt.j2" in names
    check([installed.venv / "bin/pip", "wheel", "--no-deps", "-w", tmp_path, sdist])
    (wheel,) = tmp_path.glob("mailflow-*.whl")
    assert shipped_in_wheel(wheel) == shipped_in_repository()


def set_key(text: str, section: str, key: str, value: object) -> str:
    """Set ``key`` in ``[section]`` of a config written by init, uncommenting it if needed."""
    lines = text.split("\n")
    start = lines.index(f"[{section}]")
    for i in range(start + 1, len(lines)):
        if lines[i].startswith("["):
            break
        if re.match(rf"#?\s*{key}\s*=", lines[i]):
            lines[i] = f"{key} = {json.dumps(value)}"
            return "\n".join(lines)
    raise AssertionError(f"init wrote no {key} line in [{section}]")


@dataclass
class Site:
    folder: Path
    shared: str
    members: list[str]

    @property
    def config(self) -> Path:
        return self.folder / "mailflow.toml"


def configure(folder: Path, localmail: LocalMail, new_address: Callable[..., str]) -> Site:
    """What the staff do after init: the servers (loopback here), the roster, the secrets."""
    shared = new_address("mailflow")
    domain = shared.split("@", 1)[1]
    text = (folder / "mailflow.toml").read_text()
    settings = [
        ("mailflow", "rehearsal", True),
        ("imap", "host", "127.0.0.1"), ("imap", "port", localmail.imap_port),
        ("imap", "security", "none"), ("imap", "username", shared),
        ("smtp", "host", "127.0.0.1"), ("smtp", "port", localmail.smtp_port),
        ("smtp", "security", "none"), ("smtp", "username", ""),
        ("addresses", "from", shared), ("addresses", "reply_to", shared),
        ("addresses", "alias", new_address("equipe", domain)),
        ("addresses", "cohort", new_address("promo", domain)),
    ]  # fmt: skip
    for section, key, value in settings:
        text = set_key(text, section, key, value)
    (folder / "mailflow.toml").write_text(text)
    members = [new_address("camille"), new_address("hugo")]
    quoted = ", ".join(f'"{m}"' for m in members)
    (folder / "roster.toml").write_text(
        f'[[defi]]\nid = "alpha"\nname = "Alpha"\nhost = "DINUM"\nmembers = [{quoted}]\n\n'
        f'[[staff]]\nname = "Alex"\naddress = "{new_address("staff", domain)}"\n'
    )
    secrets = folder / "secrets.env"
    values = {"MAILFLOW_IMAP_PASSWORD": f"'{PASSWORD}'", "MAILFLOW_SECRET": "'a long s3cret'"}
    secrets.write_text(
        "".join(
            f"{line}{values.get(line.rstrip('='), '')}\n"
            for line in secrets.read_text().splitlines()
        )
    )
    return Site(folder, shared, members)


def environment_file(path: Path) -> dict[str, str]:
    """NAME=value lines as systemd's EnvironmentFile= reads them (quotes removed)."""
    found = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith(("#", ";")):
            continue
        name, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        found[name.strip()] = value
    return found


BASE_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/nonexistent"}


def doctor_lines(output: str) -> list[str]:
    lines = output.strip().splitlines()
    # A new site has seen no mail to the alias yet: doctor says so, as a warning.
    assert all(line.startswith(("ok   ", "WARN alias: ")) for line in lines), output
    return lines


def test_the_installed_wheel_makes_a_site_that_checks_and_sends(
    installed, localmail, new_address, tmp_path
):
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    mailflow = installed.command()
    output = check([mailflow, "init"], cwd=site_dir, env=BASE_ENV)
    assert output.startswith("added: mailflow.toml, roster.toml, planning.toml, secrets.env, ")
    site = configure(site_dir, localmail, new_address)
    env = BASE_ENV | environment_file(site_dir / "secrets.env")
    lines = doctor_lines(check([mailflow, "doctor"], cwd=site_dir, env=env))
    assert f"ok   workflows: {site_dir / 'workflows'}: " in "\n".join(lines)
    assert f"ok   templates: {site_dir / 'templates'}: every mail renders" in "\n".join(lines)
    assert "ok   copies of the shipped files: as shipped" in lines
    output = check([mailflow, "tick", "--at", f"{FRIDAY}T09:00:00+01:00"], cwd=site_dir, env=env)
    assert re.search(r"^retro 2026-W49 request: \w+, 1 queued", output, re.M), output
    (raw,) = localmail.wait_for(site.members[0], 1)
    request = email.message_from_bytes(raw, policy=email.policy.default)
    assert str(request["Subject"]).startswith("Rétrospective de la semaine")
    assert site.shared in str(request["Reply-To"] or request["From"])


@dataclass
class Unit:
    """The [Service] lines of a unit file, for one instance, with its paths under ``root``."""

    lines: dict[str, str]
    paths: dict[str, Path]
    instance: str

    @classmethod
    def load(cls, name: str, instance: str, paths: dict[str, Path]) -> Unit:
        text = (ROOT / "systemd" / name).read_text()
        service = text[text.index("[Service]") : text.index("[Install]")]
        lines = dict(
            line.split("=", 1) for line in service.splitlines()
            if "=" in line and not line.startswith("#")
        )  # fmt: skip
        return cls(lines, paths, instance)

    def __getitem__(self, key: str) -> str:
        value = self.lines[key].replace("%i", self.instance)
        for prefix, here in self.paths.items():
            value = value.replace(prefix, str(here))
        return value


def as_user(uid: int, gid: int, *groups: int) -> list[str]:
    """setpriv's arguments to run a command as ``uid``, with only the groups given."""
    extra = [f"--groups={','.join(map(str, groups))}"] if groups else ["--clear-groups"]
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", *extra]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_service_runs_as_its_user_and_the_staff_read_the_live_database(
    installed, localmail, new_address
):
    root = Path(tempfile.mkdtemp(prefix="service-", dir=installed.root))
    root.chmod(0o755)
    etc, state = root / "etc/mailflow", root / "var/lib"
    unit = Unit.load(
        "mailflow@.service", "eig",
        {"/etc/mailflow": etc, "%S": state, "/var/lib": state, "/opt/mailflow": installed.venv},
    )  # fmt: skip
    site_dir, database = etc / "eig", state / "mailflow/eig/mailflow.db"
    config = site_dir / "mailflow.toml"
    mailflow = installed.command()
    readme = Readme({
        "/opt/mailflow": str(installed.venv), "/etc/mailflow": str(etc),
        "/var/lib/mailflow": str(state / "mailflow"),
        "/etc/sysusers.d/": f"{root}/etc/sysusers.d/",
        "&& systemd-sysusers": f"&& systemd-sysusers --root={root}",
        "-o mailflow -g mailflow": f"-o {SERVICE_UID} -g {SERVICE_GID}",
        "--reuid=mailflow --regid=mailflow": f"--reuid={SERVICE_UID} --regid={SERVICE_GID}",
    })  # fmt: skip
    # The README's commands, as root: the user, the site, the state directory, the check.
    (root / "etc").mkdir(exist_ok=True)
    readme("install -D -m 644 systemd/mailflow.sysusers", cwd=installed.source)
    assert "\nmailflow:x:" in "\n" + (root / "etc/passwd").read_text()
    readme("/opt/mailflow/bin/mailflow init", env=BASE_ENV, umask=0o077)
    in_state = f"/var/lib/{unit.lines['StateDirectory'].replace('%i', 'eig')}/mailflow.db"
    assert readme.line("/opt/mailflow/bin/mailflow init").endswith(f" --database {in_state}")
    site = configure(site_dir, localmail, new_address)
    assert (mode(etc), mode(site_dir), mode(config), mode(site_dir / "roster.toml")) == (
        0o755, 0o755, 0o644, 0o644,
    )  # fmt: skip
    assert mode(site_dir / "templates/retro") == 0o755
    assert mode(site_dir / "templates/retro/request.fr.txt.j2") == 0o644
    assert mode(site_dir / "secrets.env") == 0o600
    assert unit["EnvironmentFile"] == str(site_dir / "secrets.env")
    assert unit["ExecStart"].startswith(f"{mailflow} -c {config} ")
    readme("install -d -m 755")
    readme("install -d -o mailflow")
    assert mode(database.parent) == int(unit["StateDirectoryMode"], 8)
    # doctor, even as root, creates no database: the service's user does, at its first run.
    site_secrets = environment_file(site_dir / "secrets.env")
    as_root = check([mailflow, "-c", config, "doctor"], env=BASE_ENV | site_secrets)
    assert f"database: {database} not created yet" in as_root and not database.exists()
    lines = doctor_lines(readme("(set -a", env=BASE_ENV))
    assert any(f"ok   database: {database} not created yet" in line for line in lines), lines
    assert not database.exists()
    assert readme.all_run(0)

    def start(at: str, *options: str) -> subprocess.Popen[str]:
        """What systemd does for the unit (with a clock moved by hand: a rehearsal)."""
        directory = state / unit["StateDirectory"]
        os.chown(directory, SERVICE_UID, SERVICE_GID)
        directory.chmod(int(unit["StateDirectoryMode"], 8))
        clock = root / "clock"
        clock.write_text(f"{FRIDAY}T{at}:00+01:00")
        clock.chmod(0o644)
        env = BASE_ENV | environment_file(Path(unit["EnvironmentFile"]))
        command = [*shlex.split(unit["ExecStart"]), "--clock-file", str(clock), *options]
        return subprocess.Popen(
            [*as_user(SERVICE_UID, SERVICE_GID), *command], env=env, umask=int(unit["UMask"], 8),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip

    def stop(daemon: subprocess.Popen[str], signal: bool = True) -> None:
        if signal:
            daemon.terminate()
        output, _ = daemon.communicate(timeout=60)
        assert daemon.returncode == 0, output

    stop(start("09:00", "--once"), signal=False)
    (request,) = localmail.wait_for(site.members[0], 1)
    assert (database.stat().st_uid, mode(database)) == (SERVICE_UID, 0o660)
    lock = Path(f"{database}.lock")
    assert (lock.stat().st_uid, mode(lock)) == (SERVICE_UID, 0o660)

    def attempt(uid: int, gid: int, groups: tuple[int, ...], *cmd: str | Path) -> int:
        args = [*as_user(uid, gid, *groups), *map(str, cmd)]
        return subprocess.run(args, capture_output=True, env=BASE_ENV, check=False).returncode

    secrets = site_dir / "secrets.env"
    assert attempt(SERVICE_UID, SERVICE_GID, (), "cat", secrets) != 0, "the service reads secrets"
    assert attempt(STAFF_UID, STAFF_UID, (SERVICE_GID,), "cat", secrets) != 0
    assert attempt(STRANGER_UID, STRANGER_UID, (), "cat", database) != 0, "anyone reads the db"
    # A staff member, in the group, without root and while the daemon is not running.
    as_staff = as_user(STAFF_UID, STAFF_UID, SERVICE_GID)
    staff_line = readme.command("/opt/mailflow/bin/mailflow -c")
    output = check([*as_staff, "sh", "-c", staff_line], env=BASE_ENV)
    assert "  [" in output and "Alpha" in output, output
    assert readme.all_run(1)
    staff = [*as_staff, mailflow, "-c", config]
    status = check([*staff, "status", "--week", "2026-W49"], env=BASE_ENV)
    assert "[ ] Alpha : pas de réponse" in status and "request : faite" in status, status
    answer = "Victoires :\nLa démo est en ligne.\n\nDifficultés :\nRAS\n\nBesoins :\nRien\n"
    raw = clients.reply("gmail", request, site.members[0], "Camille", answer)
    localmail.send(raw, [site.shared], site.members[0])
    localmail.wait_for(site.shared, 1)
    # A staff process that dies with the database open leaves its WAL files behind: they
    # are the group's (setgid), so that the daemon can open them.
    left_open = (
        "import os, sqlite3, sys; sqlite3.connect(sys.argv[1])"
        ".execute('select count(*) from messages').fetchone(); os._exit(0)"
    )
    python = installed.venv / "bin/python"
    check([*as_user(STAFF_UID, STAFF_UID, SERVICE_GID), python, "-c", left_open, database])
    shm = Path(f"{database}-shm").stat()
    assert (shm.st_uid, shm.st_gid, stat.S_IMODE(shm.st_mode)) == (STAFF_UID, SERVICE_GID, 0o660)
    # The daemon carries on after the staff opened its database, and they read it live.
    daemon = start("10:00", "--heartbeat", "0.5")
    try:
        deadline = time.monotonic() + 30
        while "[x] Alpha" not in (
            status := check([*staff, "status", "--week", "2026-W49"], env=BASE_ENV)
        ):
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
        assert f"[x] Alpha : réponse le ven. 4 déc. 2026 10:00, de {site.members[0]}" in status
        live = {p.name for p in database.parent.iterdir()}
        assert {"mailflow.db-wal", "mailflow.db-shm"} <= live, "the daemon's database is not open"
        export = check([*staff, "export", "--format", "csv"], env=BASE_ENV)
        assert "La démo est en ligne." in export
    finally:
        stop(daemon)
    for path in database.parent.iterdir():
        assert mode(path) & 0o007 == 0, f"{path} is open to others"
