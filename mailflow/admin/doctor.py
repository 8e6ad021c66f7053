"""``mailflow doctor``: the pre-flight check of a site, each problem once, with how to fix it.

Checks, in order: the config, the secrets it names, the database, the workflows, every
mail rendered (the preflight), the headings each request shows against those its
workflow reads, the order of each workflow's steps, the roster, the OAuth2 token source
(with ``auth = "oauth2"``: a token is asked for), the IMAP mailbox (login, folders, IDLE,
whether mail to the alias is seen reaching it) and the SMTP relay. A check that depends
on an earlier failed one says so instead of failing again. Nothing is sent and nothing
in the mailbox is changed (folders are examined read-only).
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from ..config import Config, OAuth2Config, load_config
from ..errors import ConfigError, MailflowError
from ..programme.kinds import kind_of
from ..programme.workflow import Workflow, digest_steps

ALIAS_LOOKBACK = 200  # most recent messages of each folder looked at for mail to the alias
RESULTS_LOOKBACK = 50  # most recent messages looked at for the trusted server's header


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    warning: bool = False  # ok, but worth a look: not a failure of the check


class Unconfirmed(MailflowError):
    """Nothing is wrong that doctor can see, but it could not confirm the thing checked."""


def _run(name: str, check: Callable[[], str]) -> Check:
    try:
        return Check(name, True, check())
    except Unconfirmed as e:
        return Check(name, True, str(e), warning=True)
    except MailflowError as e:
        return Check(name, False, str(e))
    except OSError as e:
        return Check(name, False, f"{type(e).__name__}: {e}")


def checks(path: Path | str | None) -> Iterator[Check]:
    """Every check in order; those that need what failed say so instead of failing again."""
    try:
        config = load_config(path)
    except ConfigError as e:
        hint = "" if "mailflow init" in str(e) else " (see `mailflow init` for a commented example)"
        yield Check("config", False, f"{e}{hint}")
        return
    rehearsal = "; rehearsal: the clock may be moved (tick --at the future)"
    yield Check("config", True, f"{config.path}{rehearsal if config.rehearsal else ''}")
    secrets = _run("secrets", lambda: _secrets(config))
    yield secrets
    yield _run("database", lambda: _database(config))
    if config.database.exists():
        yield _run("public holidays", lambda: _holidays(config))
    workflows: list[Workflow] = []
    loaded = _run("workflows", lambda: _workflows(config, workflows))
    yield loaded
    if not loaded.ok:
        yield Check("templates", False, "not checked: fix the workflows first")
    else:
        rendered: dict[str, str] = {}
        templates = _run("templates", lambda: _templates(config, rendered))
        yield templates
        if templates.ok:
            yield from _headings(workflows, rendered)
        yield from _order(config, workflows)
    yield from _copies(config)
    yield _run("roster", lambda: _roster(config))
    if secrets.ok:
        yield from _servers(config)
    else:
        for name in ("IMAP", "alias", "SMTP"):
            yield Check(name, False, "not checked: fix the secrets first")


def _servers(config: Config) -> Iterator[Check]:
    """The token sources, then each server's login with them."""
    tokens = {"IMAP": config.imap.oauth2, "SMTP": config.smtp.oauth2}
    if tokens["SMTP"] == tokens["IMAP"]:
        del tokens["SMTP"]  # one source for both: asked once
    failed = set()
    for protocol, source in tokens.items():
        if source is not None:
            check = _run(f"{protocol} token", partial(_token, source))
            yield check
            if not check.ok:
                failed.add(protocol)
    if "IMAP" in failed:
        yield Check("IMAP", False, "not checked: fix the token source first")
        yield Check("alias", False, "not checked: fix the IMAP login first")
    else:
        imap = _run("IMAP", lambda: _imap(config))
        yield imap
        if imap.ok:
            yield _run("alias", lambda: _alias(config))
            yield _run("commands", lambda: _commands(config))
        else:
            yield Check("alias", False, "not checked: fix the IMAP login first")
    shared = config.smtp.oauth2 is not None and "SMTP" not in tokens
    if "SMTP" in failed or (shared and "IMAP" in failed):
        yield Check("SMTP", False, "not checked: fix the token source first")
    else:
        yield _run("SMTP", lambda: _smtp(config))


def _token(source: OAuth2Config) -> str:
    from .. import oauth

    token = oauth.token(source)
    if token.expires_at is None:
        return f"{source.describe()} gives a token (its lifetime is not known: asked at each login)"
    minutes = max(0, int((token.expires_at - time.time()) // 60))
    return f"{source.describe()} gives a token, valid for {minutes} more minutes"


def _secrets(config: Config) -> str:
    config.require_secrets()
    named = _secret_names(config.imap.oauth2, config.imap.password_env)
    if config.smtp.username:
        more = _secret_names(config.smtp.oauth2, config.smtp.password_env)
        named += [n for n in more if n not in named]
    unset = ""
    if config.security.secret:
        named.append(f"${config.security.secret_env}")
    else:
        unset = f"; ${config.security.secret_env} unset: a secret kept in the database signs tokens"
    return f"{', '.join(named)} set{unset}"


def _secret_names(source: OAuth2Config | None, password_env: str) -> list[str]:
    if source is None:
        return [f"${password_env}"]
    names = (source.client_secret_env, source.refresh_token_env, source.service_account_env)
    return [f"${n}" for n in names if n]


def _database(config: Config) -> str:
    from ..store import mailbox
    from ..store.db import open_db

    if not config.database.exists():
        folder = next(p for p in config.database.parents if p.exists())
        if not os.access(folder, os.W_OK):
            raise MailflowError(
                f"{config.database} does not exist and {folder} cannot be written by this "
                f"user: create {config.database.parent} for the service's user (see the README)"
            )
        return (
            f"{config.database} not created yet: the first tick or the service creates it "
            "(doctor does not, so that it belongs to the user the service runs as)"
        )
    db = open_db(config.database)
    result = mailbox.integrity(db)
    if result != "ok":
        raise MailflowError(f"{config.database} is damaged: {result}")
    messages, quarantined = mailbox.message_counts(db)
    note = f", {quarantined} quarantined (see `mailflow status`)" if quarantined else ""
    return f"{config.database}: {messages} messages stored{note}"


def _holidays(config: Config) -> str:
    """The kept years computed again: an upgrade of the holidays package may change one."""
    from ..programme import calendars
    from ..store.db import open_db

    changed = calendars.recompute(open_db(config.database))
    if changed:
        years = ", ".join(f"{c}{'-' + s if s else ''} {y}" for c, s, y in changed)
        return f"kept again, the holidays package now gives other days for {years}"
    return "the kept years are those the holidays package gives"


def _workflows(config: Config, found: list[Workflow]) -> str:
    from ..programme.workflow import load_workflows

    found.extend(load_workflows(config.workflows_dir))
    names = ", ".join(f"{w.name} ({_counted(len(w.steps), 'step')})" for w in found)
    return f"{config.workflows_dir}: {names or 'no workflow files'}"


def _templates(config: Config, rendered: dict[str, str]) -> str:
    from ..running.engine import Engine
    from ..running.preflight import check

    # An in-memory database: rendering needs no live one, and doctor creates none.
    engine = Engine(replace(config, database=Path(":memory:")), preflight=False)
    texts = check(engine, engine.languages(), cached=False)
    rendered.update(texts)
    return f"{config.templates_dir}: every mail renders ({len(texts)} templates, with samples)"


def _headings(workflows: list[Workflow], rendered: dict[str, str]) -> Iterator[Check]:
    """Each request and reminder shows a heading the workflow reads, for every section."""
    for workflow in workflows:
        spec = workflow.collect
        if spec is None:
            continue
        # The mail people answer: the request and its reminders.
        asking = [s for s in workflow.steps if kind_of(s).role(s) in ("request", "reminder")]
        for step in asking:
            for name, text in sorted(rendered.items()):
                if not name.startswith(step.template + "."):
                    continue
                shown = {m.key for m in map(spec.match, text.splitlines()) if m is not None}
                missing = [k for k in spec.section_keys if k not in shown]
                if missing:
                    yield Check(
                        f"headings of {name}", False,
                        f"shows no heading that workflow {workflow.name!r} reads for "
                        f"{', '.join(missing)}: replies written under it would not be "
                        f"understood; write one of the headings of [[collect.sections]] in "
                        f"the template, or add the template's words to those headings",
                    )  # fmt: skip


def _order(config: Config, workflows: list[Workflow]) -> Iterator[Check]:
    """Reminders and the deadline come before the digest; the request before the reminders."""
    from ..programme.occurrences import due_at

    day = dt.date(2026, 11, 27)  # any day: steps are compared by their offsets from it
    tz = config.timezone
    for workflow in workflows:
        if workflow.collect is None:
            continue
        dues = {s.id: due_at(s, day, tz, workflow.schedule) for s in workflow.steps}
        digests = digest_steps(workflow)
        if not digests:
            continue
        first = min(digests, key=lambda s: dues[s.id])
        opening = workflow.opening
        for step in workflow.steps:
            if kind_of(step).role(step) != "reminder":
                continue
            if dues[step.id] >= dues[first.id]:
                yield Check(
                    f"order of {workflow.name}", False,
                    f"step {step.id!r} (a reminder, at {step.at:%H:%M}) is not before step "
                    f"{first.id!r} (the digest, at {first.at:%H:%M}): it would never be sent; "
                    "move it earlier or the digest later",
                )  # fmt: skip
            elif opening is not None and dues[step.id] <= dues[opening.id]:
                yield Check(
                    f"order of {workflow.name}", False,
                    f"step {step.id!r} (a reminder) is not after step {opening.id!r} "
                    "(the request): move it later",
                )  # fmt: skip
        deadline = workflow.deadline
        if deadline is not None:
            deadline_at = dt.datetime.combine(day, deadline, tzinfo=tz)
            if deadline_at > dues[first.id]:
                yield Check(
                    f"order of {workflow.name}", False,
                    f"[collect] deadline {deadline:%H:%M} is after step {first.id!r} (the "
                    f"digest, at {first.at:%H:%M}): answers sent on time would miss it; "
                    "set the deadline before the digest",
                )  # fmt: skip


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
    from ..programme.roster import load_roster

    if config.roster is None:
        raise MailflowError("no roster: set [mailflow] roster to a file of teams and staff")
    roster = load_roster(config.roster)
    members = sum(len(d.members) for d in roster.defis)
    people = f"{_counted(len(roster.defis), 'team')}, {_counted(members, 'member')}"
    if not roster.staff:
        return f"{people}, no staff: staff mail goes to the alias {config.addresses.alias}"
    return f"{people}, {_counted(len(roster.staff), 'staff member')}"


def _counted(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _imap(config: Config) -> str:
    from ..receiving.imap import session

    with session(config.imap) as client:
        found = []
        for folder in config.imap.folders:
            if not client.folder_exists(folder):
                raise MailflowError(
                    f"the folder {folder!r} does not exist in {config.imap.username}'s mailbox:"
                    " fix [imap] folders"
                )
            info = client.select_folder(folder, readonly=True)
            found.append(f"{folder}: {info[b'EXISTS']} messages")
        idle = (
            "IDLE supported"
            if b"IDLE" in client.capabilities()
            else "no IDLE: the daemon will poll"
        )
    return f"logged in as {config.imap.username}; {', '.join(found)}; {idle}"


def _alias(config: Config) -> str:
    """Whether mail to the alias is seen in the shared mailbox (the alias must route there)."""
    from ..receiving.imap import session

    alias = config.addresses.alias
    with session(config.imap) as client:
        for folder in config.imap.folders:
            info = client.select_folder(folder, readonly=True)
            count = int(info[b"EXISTS"])
            if not count:
                continue
            first = max(1, count - ALIAS_LOOKBACK + 1)
            found = client.search(["TO", alias, f"{first}:*"]) or client.search(
                ["CC", alias, f"{first}:*"]
            )
            if found:
                return (
                    f"mail to {alias} reaches {config.imap.username} (seen in {folder}, "
                    f"checked by looking for it among the last {ALIAS_LOOKBACK} messages)"
                )
    raise Unconfirmed(
        f"no mail to {alias} seen yet in {config.imap.username}'s mailbox: make sure the "
        "alias delivers to this mailbox (or lists it), write to the alias once, and run "
        "doctor again to confirm"
    )


def _commands(config: Config) -> str:
    """Whether the trusted server adds its Authentication-Results to the mail that arrives:
    where it adds none, a sender can write one in its name, and forge a command."""
    from email.parser import BytesHeaderParser

    from ..receiving.authresults import authserv_id
    from ..receiving.imap import session

    security = config.security
    own = "; mailflow's own DKIM check counts too" if security.verify_dkim else ""
    trusted = {t.lower() for t in security.trusted_authserv_ids}
    if not trusted:
        if not security.verify_dkim:
            raise Unconfirmed(
                "no command by mail can be obeyed: set [security] verify_dkim = true, or "
                "trusted_authserv_ids to the server that adds Authentication-Results"
            )
        return "authorised by mailflow's own DKIM check (no trusted server)"
    folder = config.imap.folders[0]
    with session(config.imap) as client:
        count = int(client.select_folder(folder, readonly=True)[b"EXISTS"])
        uids = client.search([f"{max(1, count - RESULTS_LOOKBACK + 1)}:*"]) if count else []
        item = "BODY.PEEK[HEADER.FIELDS (AUTHENTICATION-RESULTS)]"
        fetched = client.fetch(uids, [item]) if uids else {}
    names = ", ".join(sorted(trusted))
    if not fetched:  # a new site: nothing to judge yet, nothing wrong either
        return f"{names}'s results trusted (no mail in {folder} yet to check they come){own}"
    lacking = 0
    for data in fetched.values():
        header = next((v for k, v in data.items() if k.startswith(b"BODY[HEADER")), b"")
        found = BytesHeaderParser().parsebytes(header or b"").get_all("Authentication-Results")
        if not any(authserv_id(str(h)) in trusted for h in found or ()):
            lacking += 1
    if lacking:
        raise Unconfirmed(
            f"{lacking} of the last {len(fetched)} messages in {folder} carry no "
            f"Authentication-Results from {names}: if that server does not add one to every "
            "message, a sender can write it and forge a command; then remove it from "
            "[security] trusted_authserv_ids and set verify_dkim = true"
        )
    return f"the last {len(fetched)} messages in {folder} carry {names}'s results{own}"


def _smtp(config: Config) -> str:
    from ..sending.send import connect

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
