"""``mailflow doctor``: check the config, the database, the workflows and both mail servers.

Each check says in plain words what is wrong and what to do; nothing is sent and nothing
in the mailbox is changed (the folders are examined read-only).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .config import Config, load_config
from .db import open_db
from .engine import Engine
from .errors import ConfigError, MailflowError
from .imap import session
from .send import connect


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def _run(name: str, check: Callable[[], str]) -> Check:
    try:
        return Check(name, True, check())
    except MailflowError as e:
        return Check(name, False, str(e))
    except OSError as e:
        return Check(name, False, f"{type(e).__name__}: {e}")


def checks(path: Path | str | None) -> Iterator[Check]:
    """Every check in order; later ones are skipped when the config cannot be read."""
    try:
        config = load_config(path)
    except ConfigError as e:
        yield Check("config", False, f"{e} (see `mailflow init` for a commented example)")
        return
    yield Check("config", True, str(config.path))
    yield _run("database", lambda: _database(config))
    yield _run("workflows and templates", lambda: _workflows(config))
    yield from _copies(config)
    yield _run("roster", lambda: _roster(config))
    yield _run("secret", lambda: _secret(config))
    yield _run("IMAP", lambda: _imap(config))
    yield _run("SMTP", lambda: _smtp(config))


def _database(config: Config) -> str:
    db = open_db(config.database)
    result = db.execute("pragma quick_check").fetchone()[0]
    if result != "ok":
        raise MailflowError(f"{config.database} is damaged: {result}")
    messages = db.execute("select count(*) from messages").fetchone()[0]
    quarantined = db.execute(
        "select count(*) from messages where status = 'quarantined'"
    ).fetchone()[0]
    note = f", {quarantined} quarantined (see `mailflow status`)" if quarantined else ""
    return f"{config.database}: {messages} messages stored{note}"


def _workflows(config: Config) -> str:
    engine = Engine(config)
    names = ", ".join(f"{w.name} ({len(w.steps)} steps)" for w in engine.workflows)
    return f"{config.workflows_dir}: {names or 'no workflow files'}; every mail renders"


def _copies(config: Config) -> Iterator[Check]:
    """A line per copied workflow or template that is not as shipped (after an upgrade)."""
    from .site import differences

    if config.path is None:
        return
    copies = {"workflows": config.workflows_dir, "templates": config.templates_dir}
    try:
        found = differences(config.path.parent, copies)
    except (MailflowError, OSError) as e:
        yield Check("copies of the shipped files", False, str(e))
        return
    if found is None:
        return
    if not found:
        yield Check("copies of the shipped files", True, "as shipped")
    for d in found:
        yield Check(d.path, True, d.detail)


def _roster(config: Config) -> str:
    if config.roster is None:
        raise MailflowError("no roster: set [mailflow] roster to a file of défis and staff")
    engine = Engine(config, preflight=False)
    defis = engine.db.execute("select count(*) from defis").fetchone()[0]
    staff = engine.db.execute("select count(*) from staff").fetchone()[0]
    if not staff:
        return f"{defis} défis, no staff: staff mail goes to the alias {config.addresses.alias}"
    return f"{defis} défis, {staff} staff members"


def _secret(config: Config) -> str:
    if config.security.secret:
        return f"from ${config.security.secret_env}"
    variable = config.security.secret_env
    return f"${variable} is unset: a secret generated and kept in the database is used"


def _imap(config: Config) -> str:
    with session(config.imap) as client:
        found = []
        for folder in config.imap.folders:
            if not client.folder_exists(folder):
                raise MailflowError(
                    f"the folder {folder!r} does not exist in {config.imap.username}'s mailbox"
                )
            info = client.select_folder(folder, readonly=True)
            found.append(f"{folder}: {info[b'EXISTS']} messages")
        idle = (
            "IDLE supported"
            if b"IDLE" in client.capabilities()
            else "no IDLE: the daemon will poll"
        )
    return f"logged in as {config.imap.username}; {', '.join(found)}; {idle}"


def _smtp(config: Config) -> str:
    client = connect(config.smtp)
    try:
        who = (
            f"logged in as {config.smtp.username}"
            if config.smtp.username
            else "no login configured"
        )
        return f"{config.smtp.host}:{config.smtp.port} ({config.smtp.security}) answers; {who}"
    finally:
        client.quit()
