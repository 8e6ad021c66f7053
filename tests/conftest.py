"""Fixtures: real Dovecot and SMTP servers on loopback, started once per test session.

A test that needs mail gets fresh mailboxes from ``new_address`` (so tests never see each
other's mail) and a ``Config`` pointing at the servers and a fresh database from
``make_config``. If Dovecot is missing, the session fails with the command that installs
it: these tests never skip silently.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import itertools
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from mailflow.cli import cli
from mailflow.config import Config, load_config
from mailflow.errors import LocalMailError
from mailflow.localmail import PASSWORD, LocalMail
from mailflow.running.engine import Engine

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).resolve().parent / "corpus"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs the mail servers, so that ``-m "not servers"`` is the
    fast tier: the tests that need nothing but Python."""
    for item in items:
        own = item.get_closest_marker("wheel") or item.get_closest_marker("starts_servers")
        if own or "localmail" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.servers)


@pytest.fixture(scope="session")
def localmail() -> Iterator[LocalMail]:
    try:
        servers = LocalMail(secure=True).start()
    except LocalMailError as e:
        pytest.fail(f"the real mail servers could not start: {e}", pytrace=False)
    yield servers
    servers.cleanup()


_counter = itertools.count()


@pytest.fixture
def new_address(localmail: LocalMail) -> Callable[..., str]:
    """Create a mailbox with a unique address: ``new_address("camille")``."""

    def make(name: str = "user", domain: str = "") -> str:
        domain = domain or f"t{uuid.uuid4().hex[:8]}.test"
        address = f"{name}.{next(_counter)}@{domain}".lower()
        return localmail.add_user(address)

    return make


ENV = {
    "MAILFLOW_IMAP_PASSWORD": PASSWORD,
    "MAILFLOW_SMTP_PASSWORD": "relay-secret",
    "MAILFLOW_SECRET": "test-secret",
    "MAILFLOW_OAUTH_CLIENT_SECRET": "app-secret",
}


def toml_text(data: dict[str, dict[str, Any]]) -> str:
    """Enough of a TOML writer for test configs: tables of strings, numbers, lists."""
    lines = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            if isinstance(value, bool):
                rendered = "true" if value else "false"
            elif isinstance(value, list):
                rendered = "[" + ", ".join(f'"{v}"' for v in value) + "]"
            elif isinstance(value, int):
                rendered = str(value)
            else:
                rendered = f'"{value}"'
            lines.append(f"{key} = {rendered}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def make_config(
    localmail: LocalMail, tmp_path: Path, new_address: Callable[..., str]
) -> Callable[..., Config]:
    """A config file for the loopback servers, a fresh database and a fresh shared mailbox.

    Keyword arguments override ``[section] key`` values: ``make_config(imap={"batch_size": 2})``.
    The file is ``config.path``, for tests that run the ``mailflow`` command.
    """

    def make(folder: Path | None = None, **overrides: dict[str, Any]) -> Config:
        folder = folder or tmp_path
        mailbox = new_address("mailflow")
        domain = mailbox.split("@", 1)[1]
        data: dict[str, dict[str, Any]] = {
            "mailflow": {"database": str(folder / "mailflow.db"), "rehearsal": True},
            "imap": {
                "host": "127.0.0.1",
                "port": localmail.imap_port,
                "security": "none",
                "username": mailbox,
            },
            "smtp": {"host": "127.0.0.1", "port": localmail.smtp_port, "security": "none"},
            "addresses": {
                "from": mailbox,
                "from_name": "Programme Test",
                "alias": new_address("equipe", domain),
                "cohort": new_address("promo", domain),
            },
        }
        for section, values in overrides.items():
            data.setdefault(section, {}).update(values)
        path = folder / "mailflow.toml"
        path.write_text(toml_text(data))
        return load_config(path, ENV)

    return make


def corpus_files() -> list[Path]:
    return sorted(CORPUS.glob("*.eml"))


@pytest.fixture(autouse=True)
def _no_cached_tokens() -> Iterator[None]:
    """OAuth2 tokens are cached per process: no test sees another's."""
    from mailflow import oauth

    oauth.forget()
    yield
    oauth.forget()


@pytest.fixture(autouse=True)
def _no_config_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAILFLOW_CONFIG", raising=False)
    os.environ.pop("MAILFLOW_CONFIG", None)


@dataclass
class Programme:
    """A configured programme on the loopback servers: roster, mailboxes, ticks, replies."""

    config: Config
    localmail: LocalMail
    defis: dict[str, list[str]]
    staff: list[str]

    @property
    def shared(self) -> str:
        return self.config.imap.username

    def engine(self) -> Engine:
        return Engine(self.config)

    def run(self, *args: str) -> Any:
        """Run a ``mailflow`` command in-process, with this programme's config."""
        result = CliRunner().invoke(cli, ["-c", str(self.config.path), *args], env=ENV)
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    def tick(self, at: str) -> Any:
        result = self.run("tick", "--at", at)
        assert result.exit_code == 0, result.output
        return result

    def inbox(self, address: str) -> list[email.message.EmailMessage]:
        """The messages of a mailbox, decoded as a mail client shows them."""
        return [
            email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[misc]
            for raw in self.localmail.fetch(address)
        ]

    def swaks(self, raw: bytes, sender: str, to: str | None = None) -> None:
        """Send a prepared message with swaks, as a mail client submits it."""
        with tempfile.NamedTemporaryFile(suffix=".eml") as f:
            f.write(raw)
            f.flush()
            result = subprocess.run(
                ["swaks", "--server", "127.0.0.1", "--port", str(self.localmail.smtp_port),
                 "--from", sender or "<>", "--to", to or self.shared, "--data", f"@{f.name}",
                 "--silent", "2"],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr

    def mutt(self, sender: str, name: str, request: bytes, body: str) -> None:
        """Reply to ``request`` with mutt, which builds the message itself (a real MUA)."""
        original = email.message_from_bytes(request, policy=email.policy.default)
        draft = (
            f"From: {name} <{sender}>\nTo: {self.shared}\nSubject: Re: {original['Subject']}\n"
            f"In-Reply-To: {original['Message-ID']}\nReferences: {original['Message-ID']}\n\n"
            f"{body}\n"
        )
        with tempfile.TemporaryDirectory() as home:
            path = Path(home) / "draft.txt"
            path.write_text(draft)
            port = self.localmail.smtp_port
            settings = (
                f"set smtp_url=smtp://127.0.0.1:{port}/ ssl_starttls=no ssl_force_tls=no"
                f" record='' charset=utf-8 send_charset=utf-8 from={sender}"
            )
            result = subprocess.run(
                ["mutt", "-n", "-F", "/dev/null", "-e", settings, "-H", str(path)],
                stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False,
                env={**os.environ, "HOME": home}, timeout=60,
            )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr

    def wait_shared(self, count: int) -> None:
        self.localmail.wait_for(self.shared, count)


def text_of(msg: email.message.EmailMessage, subtype: str = "plain") -> str:
    """The text (or HTML) part as a reader sees it, line ends normalised."""
    part = msg.get_body((subtype,))
    return "" if part is None else part.get_content().replace("\r\n", "\n")


@pytest.fixture
def programme(
    make_config: Callable[..., Config], new_address: Callable[..., str], localmail: LocalMail,
    tmp_path: Path,
) -> Callable[..., Programme]:  # fmt: skip
    """``programme({"alpha": 2, "beta": 1})``: défis with that many member mailboxes each."""

    def make(
        defis: dict[str, int], languages: dict[str, str] | None = None, **overrides: Any
    ) -> Programme:
        members: dict[str, list[str]] = {}
        lines = []
        for defi, count in defis.items():
            domain = f"{defi}-{uuid.uuid4().hex[:6]}.test"
            members[defi] = [new_address(f"{defi}{i}", domain) for i in range(count)]
            quoted = ", ".join(f'"{m}"' for m in members[defi])
            language = (languages or {}).get(defi)
            lines += [
                "[[defi]]", f'id = "{defi}"', f'name = "{defi.capitalize()}"',
                f'host = "Administration {defi}"', f"members = [{quoted}]",
                *([f'language = "{language}"'] if language else []), "",
            ]  # fmt: skip
        staff = [new_address("staff"), new_address("staff")]
        for address in staff:
            lines += ["[[staff]]", f'address = "{address}"', 'name = "Staff"', ""]
        # Each programme in its own folder: a test may make several.
        folder = Path(tempfile.mkdtemp(prefix="programme-", dir=tmp_path))
        (folder / "roster.toml").write_text("\n".join(lines))
        overrides.setdefault("mailflow", {})["roster"] = str(folder / "roster.toml")
        config = make_config(folder, **overrides)
        return Programme(config, localmail, members, staff)

    return make


CHROMIUM = "/usr/bin/chromium"
# A real browser: Debian's chromium driven by Playwright (never its own download).
# Set MAILFLOW_SCREENSHOTS to a folder to look at what the staff see (PNG files).
SHOTS = os.environ.get("MAILFLOW_SCREENSHOTS")
SCREENSHOTS = Path(SHOTS) if SHOTS else None
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail("chromium is missing: run `bash .ci/setup` (Debian package chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()
