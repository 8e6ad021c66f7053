"""The systemd files: the units pass ``systemd-analyze verify``, the sysusers file makes the user.

Neither needs a running systemd (this container has none): ``verify`` loads the unit
files and checks their directives and executables, ``systemd-sysusers --root`` writes a
scratch ``/etc/passwd``. What only a running systemd does (reading ``EnvironmentFile=``
as root, creating ``StateDirectory=``, switching to ``User=``) is played by hand in
``test_install.py``, as the unprivileged user the unit names.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

SYSTEMD = ROOT / "systemd"
INSTALLED = "/opt/mailflow/bin/mailflow"  # where the README installs the command


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: run `bash .ci/setup` (Debian package systemd)")
    return path


def verify(unit_dir: Path, unit: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("systemd-analyze"), "verify", str(unit_dir / unit)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


@pytest.fixture
def units(tmp_path: Path) -> Path:
    """The units as shipped, but for the command's path: this checkout's instead of /opt's."""
    command = Path(sys.executable).with_name("mailflow")
    assert command.exists()
    for unit in ("mailflow.service", "mailflow@.service", "mailflow-archive@.service"):
        text = (SYSTEMD / unit).read_text()
        assert text.count(INSTALLED) == 1, f"{unit} does not start {INSTALLED}"
        (tmp_path / unit).write_text(text.replace(INSTALLED, str(command)))
    return tmp_path


@pytest.mark.parametrize(
    "unit", ["mailflow.service", "mailflow@eig.service", "mailflow-archive@eig.service"]
)
def test_the_units_verify(units, unit):
    result = verify(units, unit)
    assert result.returncode == 0 and not result.stderr, result.stderr


def test_verify_does_catch_a_wrong_directive(units):
    """The check above can fail: an unknown key or a missing command is reported."""
    unit = units / "mailflow@.service"
    unit.write_text(unit.read_text().replace("UMask=0007", "UMask=0007\nUmask=0007"))
    assert "Unknown key 'Umask'" in verify(units, "mailflow@eig.service").stderr
    (units / "mailflow.service").write_text(
        (SYSTEMD / "mailflow.service").read_text().replace(INSTALLED, "/nonexistent/mailflow")
    )
    result = verify(units, "mailflow.service")
    assert result.returncode != 0 and "is not executable" in result.stderr


def _directives(unit: str) -> list[str]:
    lines = (SYSTEMD / unit).read_text().splitlines()
    return [line for line in lines if line and not line.startswith("#")]


def test_the_single_unit_is_the_template_for_one_programme():
    """Both units say the same but for the instance name: a change is made to both."""
    template = [
        line.replace("/etc/mailflow/%i/", "/etc/mailflow/")
        .replace("StateDirectory=mailflow/%i", "StateDirectory=mailflow")
        .replace("mailflow for %i,", "mailflow,")
        for line in _directives("mailflow@.service")
    ]
    assert template == _directives("mailflow.service")
    assert not any("%i" in line for line in template)


def test_the_units_run_as_the_static_user_with_secrets_from_systemd():
    service = dict(line.split("=", 1) for line in _directives("mailflow@.service") if "=" in line)
    assert service["User"] == service["Group"] == "mailflow"
    assert "DynamicUser" not in service
    assert service["EnvironmentFile"] == "/etc/mailflow/%i/secrets.env"
    assert service["ExecStart"].endswith(" -c /etc/mailflow/%i/mailflow.toml run")
    assert (service["StateDirectory"], service["StateDirectoryMode"]) == ("mailflow/%i", "2770")
    assert service["UMask"] == "0007"


def test_the_archive_unit_serves_the_same_site_as_the_same_user():
    """Beside mailflow@NAME: its config, secrets and state directory, the user mailflow."""
    archive = dict(
        line.split("=", 1) for line in _directives("mailflow-archive@.service") if "=" in line
    )
    service = dict(line.split("=", 1) for line in _directives("mailflow@.service") if "=" in line)
    assert archive["ExecStart"] == service["ExecStart"].replace(" run", " serve")
    for key in ("User", "Group", "EnvironmentFile", "StateDirectory", "UMask", "ReadOnlyPaths"):
        assert archive[key] == service[key], key
    assert "mailflow@%i.service" in archive["After"]


def test_sysusers_makes_the_mailflow_user_and_group(tmp_path):
    (tmp_path / "etc").mkdir()
    subprocess.run(
        [tool("systemd-sysusers"), f"--root={tmp_path}", str(SYSTEMD / "mailflow.sysusers")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    passwd, group = ((tmp_path / "etc" / f).read_text().splitlines() for f in ("passwd", "group"))
    users = {u.split(":")[0]: u.split(":") for u in passwd}
    groups = {g.split(":")[0]: g.split(":") for g in group}
    user = users["mailflow"]
    assert int(user[2]) < 1000, "not a system user"
    assert user[3] == groups["mailflow"][2], "its group is not mailflow"
    assert user[5] == "/var/lib/mailflow"
    assert user[6].endswith("nologin")
