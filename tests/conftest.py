"""Fixtures: real Dovecot and SMTP servers on loopback, started once per test session.

A test that needs mail gets fresh mailboxes from ``new_address`` (so tests never see each
other's mail) and a ``Config`` pointing at the servers and a fresh database from
``make_config``. If Dovecot is missing, the session fails with the command that installs
it: these tests never skip silently.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mailflow.config import Config, load_config
from mailflow.errors import LocalMailError
from mailflow.localmail import PASSWORD, LocalMail

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).resolve().parent / "corpus"


@pytest.fixture(scope="session")
def localmail() -> Iterator[LocalMail]:
    try:
        servers = LocalMail().start()
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


ENV = {"MAILFLOW_IMAP_PASSWORD": PASSWORD, "MAILFLOW_SECRET": "test-secret"}


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

    def make(**overrides: dict[str, Any]) -> Config:
        mailbox = new_address("mailflow")
        domain = mailbox.split("@", 1)[1]
        data: dict[str, dict[str, Any]] = {
            "mailflow": {"database": str(tmp_path / "mailflow.db")},
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
        path = tmp_path / "mailflow.toml"
        path.write_text(toml_text(data))
        return load_config(path, ENV)

    return make


def corpus_files() -> list[Path]:
    return sorted(CORPUS.glob("*.eml"))


@pytest.fixture(autouse=True)
def _no_config_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAILFLOW_CONFIG", raising=False)
    os.environ.pop("MAILFLOW_CONFIG", None)
