"""The configuration: ``mailflow.toml`` into frozen dataclasses, secrets from the environment.

Relative paths in the file are relative to the file's own folder. Secrets never live in the
file: the file names the environment variables that hold them (``password_env``,
``client_secret_env`` …), and a secret that is needed but unset is a ``ConfigError`` naming
that key. A mail server is logged in to with a password (the default) or, with
``auth = "oauth2"``, with an access token from the ``[imap.oauth2]`` token source
(``mailflow.oauth``); ``[smtp]`` without its own ``[smtp.oauth2]`` uses the IMAP one.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from .errors import ConfigError
from .tomltable import ADDRESS, LANGUAGE, VARIABLE, Table

if TYPE_CHECKING:
    import ssl

DEFAULT_MAX_MESSAGE_SIZE = 25 * 1024 * 1024
SECURITY_MODES = ("tls", "starttls", "none")
AUTH_MODES = ("password", "oauth2")
PROVIDERS = ("command", "microsoft", "google")
MICROSOFT_AUTHORITY = "https://login.microsoftonline.com"
# One scope covers IMAP.AccessAsApp and SMTP.SendAsApp: the permissions granted to the app.
MICROSOFT_SCOPE = "https://outlook.office365.com/.default"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
GOOGLE_SCOPE = "https://mail.google.com/"
CONFIG_ENV = "MAILFLOW_CONFIG"
PROJECT_DIR = Path(__file__).resolve().parent.parent


def shipped(kind: str) -> Path:
    """The folder of the ``"workflows"`` or ``"templates"`` that come with mailflow.

    Inside the installed package (``mailflow/shipped/``, put there when the wheel is
    built); in a source checkout or an editable install, the checkout's top-level folder.
    """
    inside = Path(__file__).parent / "shipped" / kind  # a wheel installs plain files
    if inside.is_dir():
        return inside
    return PROJECT_DIR / kind


@dataclass(frozen=True)
class OAuth2Config:
    """Where access tokens come from: a command, or a built-in provider's client credentials.

    ``provider`` is ``"command"`` (``token_command`` prints a token), ``"microsoft"``
    (Microsoft identity platform, client credentials: ``tenant``, ``client_id`` and the
    secret in ``$client_secret_env``) or ``"google"`` (a service account key in
    ``$service_account_env`` acting as ``subject`` by domain-wide delegation, or with
    ``grant = "refresh_token"`` a stored refresh token of ``client_id``).
    """

    provider: str
    section: str  # "imap.oauth2": where errors point
    token_command: tuple[str, ...] = ()
    tenant: str = ""
    client_id: str = ""
    client_secret_env: str = ""
    client_secret: str | None = field(default=None, repr=False)
    authority: str = MICROSOFT_AUTHORITY
    scopes: tuple[str, ...] = ()
    grant: str = ""  # google: "service_account" or "refresh_token"
    service_account_env: str = ""
    service_account: str | None = field(default=None, repr=False)  # key JSON, or its path
    refresh_token_env: str = ""
    refresh_token: str | None = field(default=None, repr=False)
    subject: str = ""  # google service account: the mailbox it acts as
    token_uri: str = ""
    ca_file: Path | None = None  # a private CA for the provider's endpoints (a proxy's)
    timeout: int = 30

    def require_secrets(self) -> None:
        """Raise ``ConfigError`` naming the variable of a secret this source needs but lacks."""
        needed: list[tuple[str, str, str | None]] = []
        if self.provider == "microsoft" or self.grant == "refresh_token":
            needed.append(("client_secret_env", self.client_secret_env, self.client_secret))
        if self.grant == "refresh_token":
            needed.append(("refresh_token_env", self.refresh_token_env, self.refresh_token))
        elif self.provider == "google":
            needed.append(("service_account_env", self.service_account_env, self.service_account))
        for key, variable, value in needed:
            if not value:
                raise ConfigError(f"{self.section}.{key}", unset_secret(variable))

    def describe(self) -> str:
        """The source in a few words, for errors and doctor: "Microsoft tenant t, app c"."""
        if self.provider == "command":
            return f"the token command {shlex.join(self.token_command)!r}"
        if self.provider == "microsoft":
            return f"Microsoft identity platform (tenant {self.tenant}, app {self.client_id})"
        if self.grant == "refresh_token":
            return f"Google (refresh token of OAuth client {self.client_id})"
        return f"Google (service account acting as {self.subject})"


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
    auth: str = "password"
    oauth2: OAuth2Config | None = None

    def require_password(self) -> str:
        """The password; with ``auth = "oauth2"``, "" once the token source's secrets are set."""
        if self.oauth2 is not None:
            self.oauth2.require_secrets()
            return ""
        if self.password is None:
            raise ConfigError("imap.password_env", unset_secret(self.password_env))
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
    auth: str = "password"
    oauth2: OAuth2Config | None = None

    def require_password(self) -> str | None:
        """The password; None without a login, an error when a login has no password set.

        With ``auth = "oauth2"``: "" once the token source's secrets are set.
        """
        if self.oauth2 is not None:
            self.oauth2.require_secrets()
            return ""
        if not self.username:
            return None
        if self.password is None:
            raise ConfigError("smtp.password_env", unset_secret(self.password_env))
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
    # mailflow's own DKIM check of commands, its DNS lookups through ``dns_server``
    # ("host" or "host:port"; "" for the system's resolvers).
    verify_dkim: bool = False
    dns_server: str = ""


@dataclass(frozen=True)
class EventSources:
    """Where events come from: a planning file and an iCalendar file or URL (both optional)."""

    planning: Path | None = None
    calendar: str = ""
    audience: str = "everyone"  # of calendar events without X-MAILFLOW-AUDIENCE


# A calendar named by one of these is read from the web (webcal:// over https), else a file.
CALENDAR_SCHEMES = ("http://", "https://", "webcal://")
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


def unset_secret(variable: str) -> str:
    """What a ``ConfigError`` expects of a secret that is not set, and how to set it."""
    return (
        f"the environment variable {variable} to be set (fill it in the site's secrets.env: "
        f"the service reads it; in a shell, `set -a; . secrets.env; set +a` first)"
    )


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """The system's trusted CAs, plus ``ca_file`` (an organisation's private CA) if given."""
    import ssl  # only for the commands that talk to the servers

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
    smtp = _smtp(root.table("smtp", required=True), env, resolve, imap)
    addresses = _addresses(root.table("addresses", required=True))
    security = _security(root.table("security"), env)
    events_table = root.table("events")
    planning = events_table.string("planning", "")
    calendar = events_table.string("calendar", "")
    events = EventSources(
        planning=resolve(planning) if planning else None,
        calendar=calendar
        if calendar.startswith(CALENDAR_SCHEMES) or not calendar
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
        password=env.get(password_env) or None,
        folders=folders,
        batch_size=t.integer("batch_size", 500, min=1, max=10_000),
        max_message_size=t.size("max_message_size", DEFAULT_MAX_MESSAGE_SIZE),
        idle=t.boolean("idle", True),
        timeout=t.integer("timeout", 30, min=1, max=3600),
        ca_file=_ca_file(t, resolve),
        auth=t.string("auth", "password", choices=AUTH_MODES),
    )
    oauth2 = _oauth2_of(t, config.auth, env, resolve, None, config.username)
    t.done()
    return replace(config, oauth2=oauth2)


def _smtp(
    t: Table,
    env: Mapping[str, str],
    resolve: Callable[[str], Path],
    imap: ImapConfig,
) -> SmtpConfig:
    security = t.string("security", "starttls", choices=SECURITY_MODES)
    default_port = {"tls": 465, "starttls": 587, "none": 25}[security]
    password_env = t.string("password_env", "MAILFLOW_SMTP_PASSWORD", pattern=VARIABLE)
    config = SmtpConfig(
        host=t.string("host"),
        port=t.integer("port", default_port, min=1, max=65535),
        security=security,
        username=t.string("username", ""),
        password_env=password_env,
        password=env.get(password_env) or None,
        timeout=t.integer("timeout", 30, min=1, max=3600),
        ca_file=_ca_file(t, resolve),
        auth=t.string("auth", "password", choices=AUTH_MODES),
    )
    oauth2 = _oauth2_of(t, config.auth, env, resolve, imap.oauth2, config.username or imap.username)
    t.done()
    if oauth2 is not None and not config.username:  # the token is the shared mailbox's
        config = replace(config, username=imap.username)
    return replace(config, oauth2=oauth2)


def _oauth2_of(
    t: Table,
    auth: str,
    env: Mapping[str, str],
    resolve: Callable[[str], Path],
    fallback: OAuth2Config | None,
    username: str,
) -> OAuth2Config | None:
    """The server's token source: its own ``oauth2`` table, else ``fallback`` (IMAP's)."""
    if auth != "oauth2":
        if t.has("oauth2"):
            t.table("oauth2")
            t.fail("auth", '"oauth2" (an [oauth2] table is given)', auth)
        return None
    if not t.has("oauth2"):
        if fallback is None:
            t.fail("oauth2", "a table saying where tokens come from (provider = ...)")
        return fallback
    return _oauth2(t.table("oauth2"), env, resolve, username)


def _oauth2(
    t: Table, env: Mapping[str, str], resolve: Callable[[str], Path], username: str
) -> OAuth2Config:
    if t.has("token_command"):
        provider = t.string("provider", "command", choices=("command",))
    else:
        provider = t.string("provider", choices=PROVIDERS)
    base = OAuth2Config(
        provider,
        t.prefix,
        ca_file=_ca_file(t, resolve),
        timeout=t.integer("timeout", 30, min=1, max=600),
    )
    if provider == "command":
        value = t.raw("token_command")
        argv = shlex.split(value) if isinstance(value, str) else value
        if not argv or not all(isinstance(a, str) and a for a in argv):
            t.fail("token_command", "a command line (a string, or a list of strings)", value)
        config = replace(base, token_command=tuple(argv))
    elif provider == "microsoft":
        config = _microsoft(t, env, base)
    else:
        config = _google(t, env, username, base)
    t.done()
    return config


def _secret(t: Table, env: Mapping[str, str], key: str, default: str) -> tuple[str, str | None]:
    """The variable a ``*_env`` key names, and its value (None when unset or empty)."""
    variable = t.string(key, default, pattern=VARIABLE)
    return variable, env.get(variable) or None


def _microsoft(t: Table, env: Mapping[str, str], base: OAuth2Config) -> OAuth2Config:
    secret_env, secret = _secret(t, env, "client_secret_env", "MAILFLOW_OAUTH_CLIENT_SECRET")
    authority = t.string("authority", MICROSOFT_AUTHORITY).rstrip("/")
    if not authority.startswith("https://"):
        t.fail("authority", "an https:// address", authority)
    return replace(
        base, tenant=t.string("tenant"), client_id=t.string("client_id"),
        client_secret_env=secret_env, client_secret=secret, authority=authority,
        scopes=t.strings("scopes", (MICROSOFT_SCOPE,)),
    )  # fmt: skip


def _google(t: Table, env: Mapping[str, str], username: str, base: OAuth2Config) -> OAuth2Config:
    grant = t.string("grant", "service_account", choices=("service_account", "refresh_token"))
    base = replace(
        base, grant=grant, scopes=t.strings("scopes", (GOOGLE_SCOPE,)),
        token_uri=t.string("token_uri", ""),
    )  # fmt: skip
    if grant == "refresh_token":
        secret_env, secret = _secret(t, env, "client_secret_env", "MAILFLOW_OAUTH_CLIENT_SECRET")
        token_env, token = _secret(t, env, "refresh_token_env", "MAILFLOW_OAUTH_REFRESH_TOKEN")
        return replace(
            base, client_id=t.string("client_id"), client_secret_env=secret_env,
            client_secret=secret, refresh_token_env=token_env, refresh_token=token,
            token_uri=base.token_uri or GOOGLE_TOKEN_URI,
        )  # fmt: skip
    key_env, key = _secret(t, env, "service_account_env", "MAILFLOW_GOOGLE_SERVICE_ACCOUNT")
    if username:
        subject = t.string("subject", username, pattern=ADDRESS)
    else:
        subject = t.string("subject", pattern=ADDRESS)
    return replace(base, service_account_env=key_env, service_account=key, subject=subject)


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


def _dns_server(t: Table) -> str:
    value: str = t.string("dns_server", "")
    if value:
        from .receiving.dkimcheck import dns_address  # dnspython: only when one is set

        try:
            dns_address(value)
        except ValueError:
            t.fail("dns_server", "an IP address, with :port if not 53 (e.g. 127.0.0.1:5353)", value)
    return value


def _security(t: Table, env: Mapping[str, str]) -> Security:
    secret_env = t.string("secret_env", "MAILFLOW_SECRET", pattern=VARIABLE)
    config = Security(
        secret_env=secret_env,
        secret=env.get(secret_env) or None,
        trusted_authserv_ids=t.strings("trusted_authserv_ids", ()),
        verify_dkim=t.boolean("verify_dkim", False),
        dns_server=_dns_server(t),
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
