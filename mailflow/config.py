"""The configuration: ``mailflow.toml`` into frozen dataclasses, secrets from the environment.

Relative paths in the file are relative to the file's own folder. Secrets never live in the
file: the file names the environment variables that hold them (``password_env``), and a
secret that is needed but unset is a ``ConfigError`` naming that key.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

from .errors import ConfigError
from .tomltable import ADDRESS, LANGUAGE, VARIABLE, Table

DEFAULT_MAX_MESSAGE_SIZE = 25 * 1024 * 1024
SECURITY_MODES = ("tls", "starttls", "none")
CONFIG_ENV = "MAILFLOW_CONFIG"
PROJECT_DIR = Path(__file__).resolve().parent.parent


def shipped(kind: str) -> Path:
    """The folder of the ``"workflows"`` or ``"templates"`` that come with mailflow.

    Inside the installed package (``mailflow/shipped/``, put there when the wheel is
    built); in a source checkout or an editable install, the checkout's top-level folder.
    """
    inside = resources.files("mailflow").joinpath("shipped", kind)
    if isinstance(inside, Path) and inside.is_dir():
        return inside
    return PROJECT_DIR / kind


@dataclass(frozen=True)
class ImapConfig:
    """Where the shared mailbox lives and how to read it."""

    host: str
    port: int
    security: str
    username: str
    password_env: str
    password: str | None = field(repr=False)
    folders: tuple[str, ...] = ("INBOX",)
    batch_size: int = 500
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    idle: bool = True
    timeout: int = 30
    ca_file: Path | None = None  # a private CA to trust besides the system's

    def require_password(self) -> str:
        if self.password is None:
            raise ConfigError(
                "imap.password_env", f"the environment variable {self.password_env} to be set"
            )
        return self.password


@dataclass(frozen=True)
class SmtpConfig:
    """The relay mailflow sends through."""

    host: str
    port: int
    security: str
    username: str
    password_env: str
    password: str | None = field(repr=False)
    timeout: int = 30
    ca_file: Path | None = None  # a private CA to trust besides the system's

    def require_password(self) -> str | None:
        """The password; None without a login, an error when a login has no password set."""
        if not self.username:
            return None
        if self.password is None:
            raise ConfigError(
                "smtp.password_env", f"the environment variable {self.password_env} to be set"
            )
        return self.password


@dataclass(frozen=True)
class Addresses:
    """The programme's addresses: sender, where replies go, the staff alias, the cohort."""

    sender: str
    sender_name: str
    reply_to: str
    alias: str
    cohort: str
    message_id_domain: str


@dataclass(frozen=True)
class Security:
    """Token signing and the servers whose Authentication-Results are trusted."""

    secret_env: str
    secret: str | None = field(repr=False)
    trusted_authserv_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class EventSources:
    """Where events come from: a planning file and an iCalendar file or URL (both optional)."""

    planning: Path | None = None
    calendar: str = ""
    audience: str = "everyone"  # of calendar events without X-MAILFLOW-AUDIENCE


ACCOUNT = re.compile(r"([A-Za-z0-9._-]+):(pbkdf2_sha256\$\d+\$[^$\s]+\$[A-Za-z0-9+/=]+)")


@dataclass(frozen=True)
class ArchiveConfig:
    """The web archive (``mailflow serve``): where it listens, its derived database, its logins.

    The logins are ``name:hash`` pairs (hashes made by ``datasette hash-password``) in the
    environment variable ``passwords_env``, which the service gets from secrets.env.
    """

    database: Path
    host: str = "127.0.0.1"
    port: int = 8001
    base_url: str = "/"
    refresh: dt.timedelta = dt.timedelta(seconds=10)
    sql: bool = True  # arbitrary SQL for logged-in staff, on the derived database only
    passwords_env: str = "MAILFLOW_ARCHIVE_PASSWORDS"
    passwords: str | None = field(default=None, repr=False)
    secret_env: str = "MAILFLOW_ARCHIVE_SECRET"
    secret: str | None = field(default=None, repr=False)

    def require_accounts(self) -> dict[str, str]:
        """Each login's password hash; a ``ConfigError`` when none is set or one is malformed."""
        words = (self.passwords or "").replace(",", " ").split()
        if not words:
            raise ConfigError(
                "archive.passwords_env",
                f"the environment variable {self.passwords_env} to hold the staff's logins, "
                "as name:hash pairs (hashes from `datasette hash-password`)",
            )
        accounts = {}
        for word in words:
            match = ACCOUNT.fullmatch(word)
            if match is None:
                raise ConfigError(
                    "archive.passwords_env",
                    f"{self.passwords_env} to hold name:pbkdf2_sha256$... pairs",
                    word.split(":", 1)[0] + ":...",
                )
            accounts[match.group(1)] = match.group(2)
        return accounts


@dataclass(frozen=True)
class Config:
    """Everything mailflow needs to run, loaded once and never mutated."""

    path: Path | None
    database: Path
    timezone: ZoneInfo
    language: str
    workflows_dir: Path
    templates_dir: Path
    roster: Path | None
    imap: ImapConfig
    smtp: SmtpConfig
    addresses: Addresses
    security: Security
    events: EventSources = field(default_factory=EventSources)
    archive: ArchiveConfig | None = None  # None only for configs built by hand
    # A rehearsal install (tests, the demo, staff trying a week) may be told any instant;
    # a real one acts only at the present time and refuses instants in the future.
    rehearsal: bool = False

    def require_secrets(self) -> None:
        """Raise ``ConfigError`` naming the variable of a secret a mail server needs but lacks.

        Checked when ``run``, ``tick`` and ``ingest`` start, so that a missing password is a
        clear error then, not a tick that silently reads nothing.
        """
        self.imap.require_password()
        self.smtp.require_password()


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """The system's trusted CAs, plus ``ca_file`` (an organisation's private CA) if given."""
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    return context


def template_languages(folder: Path) -> tuple[str, ...]:
    """The languages mail can be written in: those of the templates present
    (``NAME.LANG.txt.j2``). The preflight checks that each one in use has every template."""
    found = {p.name.split(".")[-3] for p in folder.rglob("*.txt.j2") if p.name.count(".") >= 3}
    return tuple(sorted(found))


def find_config(path: Path | str | None = None, env: Mapping[str, str] = os.environ) -> Path:
    """The config file to use: the given path, ``$MAILFLOW_CONFIG``, or ``./mailflow.toml``."""
    if path is None:
        path = env.get(CONFIG_ENV) or "mailflow.toml"
    candidate = Path(path)
    if not candidate.is_file():
        raise ConfigError(
            str(candidate), "an existing config file (create one with `mailflow init`)"
        )
    return candidate


def load_config(path: Path | str | None = None, env: Mapping[str, str] = os.environ) -> Config:
    """Load and validate a config file; every problem is a ``ConfigError`` naming its key."""
    file = find_config(path, env)
    root = Table.from_file(file)
    config = config_from_table(root, file.resolve().parent, env, file)
    root.done()
    return config


def config_from_table(
    root: Table, base: Path, env: Mapping[str, str], file: Path | None = None
) -> Config:
    def resolve(value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else base / p

    main = root.table("mailflow")
    database = resolve(main.string("database", "mailflow.db"))
    timezone = main.timezone("timezone", "Europe/Paris")
    language = main.string("language", "fr", pattern=LANGUAGE)
    workflows_dir = resolve(main.string("workflows", str(shipped("workflows"))))
    templates_dir = resolve(main.string("templates", str(shipped("templates"))))
    if not templates_dir.is_dir():
        main.fail("templates", "an existing folder of templates", str(templates_dir))
    known = template_languages(templates_dir)
    if language not in known:
        main.fail("language", "a language of the templates: " + ", ".join(known), language)
    roster_value = main.string("roster", "")
    rehearsal = main.boolean("rehearsal", False)
    main.done()

    imap = _imap(root.table("imap", required=True), env, resolve)
    smtp = _smtp(root.table("smtp", required=True), env, resolve)
    addresses = _addresses(root.table("addresses", required=True))
    security = _security(root.table("security"), env)
    events_table = root.table("events")
    planning = events_table.string("planning", "")
    calendar = events_table.string("calendar", "")
    events = EventSources(
        planning=resolve(planning) if planning else None,
        calendar=calendar if calendar.startswith(("http://", "https://")) or not calendar
        else str(resolve(calendar)),
        audience=events_table.string(
            "audience", "everyone", choices=("entrepreneurs", "mentors", "staff", "everyone")
        ),
    )  # fmt: skip
    events_table.done()
    archive = _archive(root.table("archive"), env, resolve, database)
    return Config(
        path=file,
        database=database,
        timezone=timezone,
        language=language,
        workflows_dir=workflows_dir,
        templates_dir=templates_dir,
        roster=resolve(roster_value) if roster_value else None,
        imap=imap,
        smtp=smtp,
        addresses=addresses,
        security=security,
        events=events,
        archive=archive,
        rehearsal=rehearsal,
    )


def _ca_file(t: Table, resolve: Callable[[str], Path]) -> Path | None:
    value = t.string("ca_file", "")
    if not value:
        return None
    path = resolve(value)
    if not path.is_file():
        t.fail("ca_file", "an existing file of PEM certificates", str(path))
    return path


def _imap(t: Table, env: Mapping[str, str], resolve: Callable[[str], Path]) -> ImapConfig:
    security = t.string("security", "tls", choices=SECURITY_MODES)
    password_env = t.string("password_env", "MAILFLOW_IMAP_PASSWORD", pattern=VARIABLE)
    folders = t.strings("folders", ("INBOX",))
    if not folders:
        t.fail("folders", "at least one folder name")
    config = ImapConfig(
        host=t.string("host"),
        port=t.integer("port", 993 if security == "tls" else 143, min=1, max=65535),
        security=security,
        username=t.string("username"),
        password_env=password_env,
        password=env.get(password_env),
        folders=folders,
        batch_size=t.integer("batch_size", 500, min=1, max=10_000),
        max_message_size=t.size("max_message_size", DEFAULT_MAX_MESSAGE_SIZE),
        idle=t.boolean("idle", True),
        timeout=t.integer("timeout", 30, min=1, max=3600),
        ca_file=_ca_file(t, resolve),
    )
    t.done()
    return config


def _smtp(t: Table, env: Mapping[str, str], resolve: Callable[[str], Path]) -> SmtpConfig:
    security = t.string("security", "starttls", choices=SECURITY_MODES)
    default_port = {"tls": 465, "starttls": 587, "none": 25}[security]
    password_env = t.string("password_env", "MAILFLOW_SMTP_PASSWORD", pattern=VARIABLE)
    config = SmtpConfig(
        host=t.string("host"),
        port=t.integer("port", default_port, min=1, max=65535),
        security=security,
        username=t.string("username", ""),
        password_env=password_env,
        password=env.get(password_env),
        timeout=t.integer("timeout", 30, min=1, max=3600),
        ca_file=_ca_file(t, resolve),
    )
    t.done()
    return config


def _addresses(t: Table) -> Addresses:
    sender = t.string("from", pattern=ADDRESS)
    config = Addresses(
        sender=sender,
        sender_name=t.string("from_name", ""),
        reply_to=t.string("reply_to", sender, pattern=ADDRESS),
        alias=t.string("alias", pattern=ADDRESS),
        cohort=t.string("cohort", pattern=ADDRESS),
        message_id_domain=t.string("message_id_domain", sender.rsplit("@", 1)[1]),
    )
    t.done()
    return config


def _security(t: Table, env: Mapping[str, str]) -> Security:
    secret_env = t.string("secret_env", "MAILFLOW_SECRET", pattern=VARIABLE)
    config = Security(
        secret_env=secret_env,
        secret=env.get(secret_env) or None,
        trusted_authserv_ids=t.strings("trusted_authserv_ids", ()),
    )
    t.done()
    return config


def _archive(
    t: Table, env: Mapping[str, str], resolve: Callable[[str], Path], live: Path
) -> ArchiveConfig:
    passwords_env = t.string("passwords_env", "MAILFLOW_ARCHIVE_PASSWORDS", pattern=VARIABLE)
    secret_env = t.string("secret_env", "MAILFLOW_ARCHIVE_SECRET", pattern=VARIABLE)
    database = resolve(t.string("database", str(live.with_name(f"{live.stem}-archive.db"))))
    if database.resolve() == live.resolve():
        t.fail("database", "a file of its own, not the live database", str(database))
    base_url = t.string("base_url", "/")
    if not (base_url.startswith("/") and base_url.endswith("/")):
        t.fail("base_url", "a path that starts and ends with /, such as /archive/", base_url)
    refresh = t.duration("refresh", dt.timedelta(seconds=10))
    if refresh < dt.timedelta(seconds=1):
        t.fail("refresh", "a duration of a second or more", t.raw("refresh"))
    config = ArchiveConfig(
        database=database,
        host=t.string("host", "127.0.0.1"),
        port=t.integer("port", 8001, min=1, max=65535),
        base_url=base_url,
        refresh=refresh,
        sql=t.boolean("sql", True),
        passwords_env=passwords_env,
        passwords=env.get(passwords_env) or None,
        secret_env=secret_env,
        secret=env.get(secret_env) or None,
    )
    t.done()
    return config
