"""A Dovecot instance on loopback, started without systemd, for tests, the demo and benchmarks."""

from __future__ import annotations

import contextlib
import getpass
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from importlib import resources
from pathlib import Path
from string import Template

from ..errors import LocalMailError
from .tls import Certificates

INSTALL_HINT = (
    "install it with `apt-get install -y --no-install-recommends dovecot-imapd dovecot-lmtpd` "
    "(or run `bash .ci/setup`, which installs everything the tests need)"
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise LocalMailError(f"nothing answers on 127.0.0.1:{port}") from None
            time.sleep(0.01)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def find_binary(name: str) -> str:
    path = shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name) if p.exists()), None
    )
    if path is None:
        raise LocalMailError(f"{name} is not installed: {INSTALL_HINT}")
    return path


class Dovecot:
    """One Dovecot (IMAP + LMTP) with its config, users, mail and logs under ``base``.

    With ``tls``, IMAP also offers STARTTLS on ``imap_port`` and implicit TLS on
    ``imaps_port``; with ``introspection_url``, XOAUTH2 and OAUTHBEARER logins are checked
    by Dovecot's ``oauth2`` passdb against that endpoint (RFC 7662), besides passwords.
    """

    def __init__(
        self,
        base: Path,
        imap_port: int | None = None,
        lmtp_port: int | None = None,
        mail_format: str = "maildir",
        tls: Certificates | None = None,
        introspection_url: str | None = None,
    ) -> None:
        self.base = Path(base)
        self.imap_port = imap_port or free_port()
        self.lmtp_port = lmtp_port or free_port()
        self.imaps_port = free_port() if tls is not None else 0
        self.mail_format = mail_format
        self.tls = tls
        self.introspection_url = introspection_url
        self.config = self.base / "dovecot.conf"
        self.users_dir = self.base / "users"
        self.log = self.base / "dovecot.log"
        self._binary = find_binary("dovecot")

    def _accounts(self) -> dict[str, str]:
        if os.geteuid() == 0:
            return {
                "internal_user": "dovecot",
                "internal_group": "dovecot",
                "login_user": "dovenull",
                "mail_user": "dovecot",
                "mail_group": "dovecot",
            }
        # Without root, every Dovecot process runs as the current user.
        user = getpass.getuser()
        group = grp.getgrgid(os.getegid()).gr_name
        return {
            "internal_user": user,
            "internal_group": group,
            "login_user": user,
            "mail_user": user,
            "mail_group": group,
        }

    def write_config(self) -> None:
        accounts = self._accounts()
        self.base.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base, 0o755)
        for sub in ("mail", "home", "state"):
            (self.base / sub).mkdir(exist_ok=True)
        if os.geteuid() == 0:
            self._check_traversable(accounts["mail_user"])
            owner = pwd.getpwnam(accounts["mail_user"])
            for sub in ("mail", "home"):
                os.chown(self.base / sub, owner.pw_uid, owner.pw_gid)
        template = Template(
            resources.files("mailflow.localmail").joinpath("dovecot.conf").read_text()
        )
        self.config.write_text(
            template.substitute(
                base=self.base,
                port_imap=self.imap_port,
                port_lmtp=self.lmtp_port,
                port_imaps=self.imaps_port,
                mail_format=self.mail_format,
                **self._optional_settings(),
                **accounts,
            )
        )
        self.users_dir.mkdir(exist_ok=True)

    def _optional_settings(self) -> dict[str, str]:
        settings = {"ssl_settings": "ssl = no", "oauth2_mechanisms": "", "oauth2_passdb": ""}
        if self.tls is not None:
            settings["ssl_settings"] = (
                f"ssl = yes\nssl_cert = <{self.tls.cert}\nssl_key = <{self.tls.key}\n"
                "ssl_min_protocol = TLSv1.2"
            )
        if self.introspection_url is not None:
            oauth2 = self.base / "dovecot-oauth2.conf.ext"
            oauth2.write_text(
                f"introspection_url = {self.introspection_url}\nintrospection_mode = post\n"
                "force_introspection = yes\nusername_attribute = username\n"
                "active_attribute = active\nactive_value = true\n"
            )
            settings["oauth2_mechanisms"] = " xoauth2 oauthbearer"
            settings["oauth2_passdb"] = (
                f"passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n"
                f"  args = {oauth2}\n}}"
            )
        return settings

    def _check_traversable(self, user: str) -> None:
        """Dovecot's processes run as ``user``: every folder above ``base`` must let them in."""
        for folder in self.base.resolve().parents:
            if not os.stat(folder).st_mode & 0o001:
                raise LocalMailError(
                    f"{folder} is not traversable by the {user} user, so Dovecot cannot reach "
                    f"{self.base}: choose a base folder under a world-traversable path"
                )

    def _user_file(self, address: str) -> Path:
        local, _, domain = address.lower().partition("@")
        if not local or not domain or "/" in address or address.startswith("."):
            raise LocalMailError(f"invalid test user {address!r}")
        return self.users_dir / domain / local

    def add_user(self, address: str, password: str) -> None:
        """Create a mailbox (a passwd-file line in a file of its own)."""
        if ":" in address or "\n" in address or ":" in password or "\n" in password:
            raise LocalMailError(f"invalid test user {address!r}")
        path = self._user_file(address)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(f"{address.lower()}:{{PLAIN}}{password}::::::\n")
        tmp.replace(path)

    def has_user(self, address: str) -> bool:
        try:
            return self._user_file(address).exists()
        except LocalMailError:
            return False

    def start(self) -> None:
        self.write_config()
        # Every stream redirected: Dovecot's log child keeps an inherited stderr open, and a
        # pipe there never reaches end-of-file (a CI log capture would hang).
        with self.log.open("ab") as log:
            result = subprocess.run(
                [self._binary, "-c", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                check=False,
            )
        if result.returncode != 0:
            raise LocalMailError(f"dovecot failed to start; see {self.log}:\n{self._log_tail()}")
        wait_for_port(self.imap_port)
        wait_for_port(self.lmtp_port)
        if self.imaps_port:
            wait_for_port(self.imaps_port)

    def pid(self) -> int | None:
        try:
            return int((self.base / "run" / "master.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the master, then any of its processes still serving a client."""
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline and _alive(pid):
                    time.sleep(0.05)
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)
        for child in self._instance_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)

    def _instance_pids(self) -> list[int]:
        """Processes named after this instance (``dovecot-mailflow-PORT/imap`` …)."""
        marker = f"dovecot-mailflow-{self.imap_port}/".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if (entry / "cmdline").read_bytes().startswith(marker):
                        found.append(int(entry.name))
        return found

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
