"""The ``mailflow`` command: a thin click layer, each command calling one library function.

Only click and the errors are imported up front; each command imports what it uses, so
that ``mailflow --help`` or ``mailflow status`` does not load every module (mail servers,
iCalendar, templates) before doing anything.
"""

from __future__ import annotations

import datetime as dt
import sys
from typing import TYPE_CHECKING, Any

import click

from . import __version__
from .errors import ClockError, ConfigError, MailflowError

if TYPE_CHECKING:
    from pathlib import Path

    from .config import Config
    from .programme.workflow import Workflow
    from .running.engine import Engine


class _Group(click.Group):
    """Turns mailflow's own errors into one clear line and exit status 1 (2 for config)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as e:
            click.echo(f"mailflow: configuration error: {e}", err=True)
            sys.exit(2)
        except MailflowError as e:
            click.echo(f"mailflow: {e}", err=True)
            sys.exit(1)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="mailflow")
@click.option(
    "-c", "--config", "config_path", type=click.Path(dir_okay=False), envvar="MAILFLOW_CONFIG",
    help="Config file (default: $MAILFLOW_CONFIG or ./mailflow.toml).",
)  # fmt: skip
@click.option("-v", "--verbose", is_flag=True, help="Log what is done.")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, verbose: bool) -> None:
    """mailflow: an email-first workflow engine."""
    import logging

    from .running.logs import setup_logging

    setup_logging(logging.INFO if verbose else logging.WARNING)
    ctx.obj = {"config_path": config_path, "verbose": verbose}


def _config(ctx: click.Context) -> Config:
    from .config import load_config

    return load_config(ctx.obj["config_path"])


@cli.command()
@click.argument("folder", type=click.Path(file_okay=False), default=".")
@click.option(
    "--database", metavar="PATH",
    help="The database the config names (default: mailflow.db in FOLDER), e.g. "
    "/var/lib/mailflow/NAME/mailflow.db for the systemd service.",
)  # fmt: skip
def init(folder: str, database: str | None) -> None:
    """Make a complete site in FOLDER (default: here); never overwrites a file.

    Writes a commented mailflow.toml, example roster.toml and planning.toml, secrets.env
    (mode 600) and editable copies of the shipped workflows/ and templates/.
    """
    from pathlib import Path

    from .admin.site import KINDS, SECRETS, init_site

    report = init_site(Path(folder), database)
    for verb, names in (("added", report.added), ("kept as it was", report.kept)):
        if names:
            click.echo(f"{verb}: {', '.join(_grouped(names, KINDS))}")
    for note in report.notes:
        click.echo(f"note: {note}")
    if SECRETS in report.added:
        click.echo(f"{Path(folder) / SECRETS} is mode 600: fill in the secrets there")
    config = Path(folder) / "mailflow.toml"
    secrets = Path(folder) / SECRETS
    click.echo(
        f"next: edit {config}, the roster and {secrets}, then check with "
        f"`(set -a && . {secrets} && mailflow -c {config} doctor)` (as the service's user, "
        "see the README)"
    )


def _grouped(names: list[str], folders: tuple[str, ...]) -> list[str]:
    """File names, those of a folder summed up as ``folder/ (N files)`` when there are many."""
    shown = []
    for folder in folders:
        inside = [n for n in names if n.startswith(f"{folder}/")]
        shown += [f"{folder}/ ({len(inside)} files)"] if len(inside) > 5 else inside
    return [n for n in names if n.split("/", 1)[0] not in folders] + shown


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--workflows", "workflows_dir", type=click.Path(file_okay=False, exists=True),
    help="Folder of workflows whose headings split the text (default: the configured one).",
)  # fmt: skip
@click.option(
    "--workflow", "workflow_name",
    help="Split by this workflow's headings (default: those of the workflows asking the teams).",
)  # fmt: skip
@click.pass_context
def parse(
    ctx: click.Context, files: tuple[str, ...], workflows_dir: str | None, workflow_name: str | None
) -> None:
    """Print what mailflow understands of each FILE.eml, as JSON.

    One object for one file, a list for several. Never fails on a malformed message:
    what could not be read is listed in "warnings".
    """
    import json
    from pathlib import Path

    from .programme.workflow import collect_spec
    from .receiving.parse import parse_message

    folder = Path(workflows_dir) if workflows_dir else _workflows_dir(ctx)
    spec = collect_spec(folder, workflow_name)
    results = [parse_message(Path(f).read_bytes(), spec).to_json() for f in files]
    output = results[0] if len(results) == 1 else results
    click.echo(json.dumps(output, ensure_ascii=False, indent=2))


def _workflows_dir(ctx: click.Context) -> Path:
    try:
        return _config(ctx).workflows_dir
    except ConfigError:
        if ctx.obj["config_path"]:
            raise
        from .config import shipped

        return shipped("workflows")


@cli.command()
@click.pass_context
def ingest(ctx: click.Context) -> None:
    """Store every new message of the configured IMAP folders, then parse them."""
    from .programme.workflow import collect_spec
    from .receiving.ingest import ingest as run_ingest
    from .running.lock import Lock
    from .store.db import open_db

    config = _config(ctx)
    config.imap.require_password()
    db = open_db(config.database)
    bar: Any = None

    def progress(folder: str, done: int, total: int) -> None:
        nonlocal bar
        if total < 200:
            return
        if bar is None:
            bar = click.progressbar(length=total, label=f"{folder}", file=sys.stderr)
            bar.__enter__()
        bar.update(done - bar.pos)
        if done >= total:
            bar.__exit__(None, None, None)
            bar = None

    with Lock.for_database(config.database):
        report = run_ingest(db, config.imap, collect_spec(config.workflows_dir), progress=progress)
    for f in report.folders:
        extra = " (UIDVALIDITY changed: resynced)" if f.resynced else ""
        click.echo(
            f"{f.folder}: {f.stored} stored, {f.duplicates} already known, "
            f"{f.oversized} too large (quarantined){extra}"
        )
    click.echo(f"parsed {report.parsed}, to retry {report.retry}, quarantined {report.quarantined}")


def _engine(ctx: click.Context, *, preflight: bool = True) -> Engine:
    """The configured engine; read-only commands skip rendering every template first."""
    from .running.engine import Engine

    return Engine(_config(ctx), preflight=preflight)


def _instant(value: str | None, config: Config) -> dt.datetime | None:
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 instant such as 2026-11-27T09:00"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=config.timezone)


@cli.command()
@click.option(
    "--at", "at", metavar="ISO-8601", help="Act as if it were this instant (default: now)."
)
@click.option("--no-fetch", is_flag=True, help="Do not read the mailbox (steps and delivery only).")
@click.option(
    "--dry-run", is_flag=True,
    help="Print what would be sent and write it as .eml files; change nothing.",
)  # fmt: skip
@click.option(
    "--out", "out", type=click.Path(file_okay=False), default="dry-run", show_default=True,
    help="With --dry-run: the folder for the .eml files.",
)  # fmt: skip
@click.pass_context
def tick(ctx: click.Context, at: str | None, no_fetch: bool, dry_run: bool, out: str) -> None:
    """Ingest, then do everything due at this instant; running it twice sends nothing twice."""
    from pathlib import Path

    from .running.lock import Lock

    engine = _engine(ctx)
    engine.config.require_secrets()
    moment = _instant(at, engine.config)
    if dry_run:
        _dry_run(engine, moment, Path(out), fetch=not no_fetch)
        return
    with Lock.for_database(engine.config.database):
        report = engine.tick(moment, fetch=not no_fetch)
    if report.ingest:
        click.echo(f"ingested {report.ingest.stored} new messages")
    if report.inbound and report.inbound.handled:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(report.inbound.kinds.items()))
        click.echo(f"handled {report.inbound.handled} messages: {kinds}")
    for run in report.steps:
        note = f" ({run.note})" if run.note else ""
        click.echo(
            f"{run.workflow} {run.occurrence} {run.step}: {run.status}, {run.queued} queued{note}"
        )
    if report.delivery:
        d = report.delivery
        click.echo(f"sent {d.sent}, to retry {d.retry}, failed {d.failed}")
    for error in report.errors:
        click.echo(f"error: {error}", err=True)
    if report.errors:
        sys.exit(1)


def _dry_run(engine: Engine, moment: dt.datetime | None, out: Path, *, fetch: bool) -> None:
    import re

    from .store.states import Run

    result = engine.dry_run(moment, fetch=fetch)
    out.mkdir(parents=True, exist_ok=True)
    for number, (mail, subject) in enumerate(result.mails, 1):
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", mail.key)[:120]
        (out / f"{number:03d}-{name}.eml").write_bytes(mail.raw)
        click.echo(f"{mail.key}: to {', '.join(mail.to)}: {subject}")
    for run in result.report.steps:
        if run.status in (Run.SKIPPED, Run.HELD):
            click.echo(f"{run.workflow} {run.occurrence} {run.step}: {run.status} ({run.note})")
    for error in result.report.errors:
        click.echo(f"error: {error}", err=True)
    count = len(result.mails)
    click.echo(f"dry run: {count} mail{'s' if count != 1 else ''} would be sent, written to "
               f"{out}/; nothing was changed")  # fmt: skip


def _occurrence(engine: Engine, workflow: Workflow, week: str | None) -> str:
    import re

    from .admin.reports import current_occurrence

    every = workflow.schedule.every
    if every == "event":
        raise click.UsageError(
            f"the occurrences of {workflow.name} are the events: `mailflow events` shows them"
        )
    if week is None:
        return current_occurrence(engine, workflow)
    pattern, example = {
        "week": (r"\d{4}-W\d{2}", "2026-W48"),
        "day": (r"\d{4}-\d{2}-\d{2}", "2026-11-27"),
    }.get(every, (r"\d{4}-\d{2}", "2026-11"))
    if not re.fullmatch(pattern, week):
        raise click.BadParameter(
            f"{workflow.name} occurrences look like {example}", param_hint="--week"
        )
    return week


@cli.command()
@click.option("--week", "week", metavar="OCCURRENCE", help="e.g. 2026-W48 (default: this one).")
@click.option(
    "--workflow", "workflow_name", help="Default: the first workflow that collects replies."
)
@click.pass_context
def status(ctx: click.Context, week: str | None, workflow_name: str | None) -> None:
    """Show, per défi (or person asked), whether and when it answered, and the outbox."""
    from .admin import reports

    engine = _engine(ctx, preflight=False)
    workflow = _workflow(engine, workflow_name)
    occurrence = _occurrence(engine, workflow, week)
    shown = reports.status(engine, workflow, occurrence)
    _say(engine, "reports/status", {"s": shown})


def _say(engine: Engine, template: str, context: dict[str, Any]) -> None:
    """Print what a command shows the staff, in the configured language (``templates/reports``)."""
    click.echo(engine.renderer.text(template, engine.config.language, context), nl=False)


def _workflow(engine: Engine, name: str | None) -> Workflow:
    from .admin import reports

    try:
        return reports.find_workflow(engine, name)
    except KeyError as e:
        raise click.BadParameter(str(e.args[0]), param_hint="--workflow") from None


@cli.command()
@click.option("--week", "week", metavar="OCCURRENCE", help="e.g. 2026-W48 (default: this one).")
@click.option(
    "--workflow", "workflow_name", help="Default: the first workflow that collects replies."
)
@click.option("--step", "step_id", help="Default: the workflow's first digest step.")
@click.option("--preview", is_flag=True, required=True, help="Render without sending (required).")
@click.option(
    "--html", "html_file", type=click.Path(dir_okay=False), help="Write the HTML part here."
)
@click.option("--language", help="A language of the templates (default: the configured one).")
@click.pass_context
def digest(
    ctx: click.Context, week: str | None, workflow_name: str | None, step_id: str | None,
    preview: bool, html_file: str | None, language: str | None,
) -> None:  # fmt: skip
    """Show a digest as it went out, or as it would go out now, without sending it."""
    from pathlib import Path

    from .admin import reports
    from .programme.workflow import digest_steps

    engine = _engine(ctx, preflight=False)
    workflow = _workflow(engine, workflow_name)
    digests = [s.id for s in digest_steps(workflow)]
    step_id = step_id or (digests[0] if digests else None)
    if step_id is None or step_id not in digests:
        hint = f"{workflow.name} has no digest step {step_id!r}"
        raise click.BadParameter(hint, param_hint="--step")
    occurrence = _occurrence(engine, workflow, week)
    if language is not None:
        _check_language(engine.config.templates_dir, language)
    shown = reports.preview(engine, workflow, occurrence, step_id, language)
    rendered = shown.rendered
    if html_file:
        Path(html_file).write_text(rendered.html or "")
        click.echo(f"wrote {html_file}")
        return
    context = {"sent_at": shown.sent_at, "asked": shown.asked, "occurrence": occurrence,
               "subject": rendered.subject, "text": rendered.text}  # fmt: skip
    _say(engine, "reports/preview", context)


@cli.command()
@click.option("--month", metavar="YYYY-MM", help="e.g. 2026-12 (default: this month).")
@click.option("--preview", is_flag=True, required=True, help="Render without sending (required).")
@click.option(
    "--html", "html_file", type=click.Path(dir_okay=False), help="Write the HTML part here."
)
@click.pass_context
def report(ctx: click.Context, month: str | None, preview: bool, html_file: str | None) -> None:
    """Show the monthly report (participation, silences, needs) as it went out, or would now."""
    import re
    from pathlib import Path

    from .admin import reports
    from .programme.kinds import kind_of

    engine = _engine(ctx, preflight=False)
    found = [(w, s) for w in engine.workflows for s in w.steps if kind_of(s).name == "report"]
    if not found:
        raise click.UsageError("no workflow has a report step (see workflows/report.toml)")
    workflow, step = found[0]
    if month is not None and not re.fullmatch(r"\d{4}-\d{2}", month):
        raise click.BadParameter(f"{month!r} is no month such as 2026-12", param_hint="--month")
    occurrence = month or reports.current_occurrence(engine, workflow)
    shown = reports.preview(engine, workflow, occurrence, step.id)
    if html_file:
        Path(html_file).write_text(shown.rendered.html or "")
        click.echo(f"wrote {html_file}")
        return
    context = {"sent_at": shown.sent_at, "asked": True, "occurrence": occurrence,
               "subject": shown.rendered.subject, "text": shown.rendered.text}  # fmt: skip
    _say(engine, "reports/preview", context)


@cli.command()
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True
)
@click.option("--workflow", "workflow_name", help="Default: every workflow.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Default: standard output.")
@click.option(
    "--spreadsheet", is_flag=True,
    help="CSV for a spreadsheet: titles in the configured language, ';', UTF-8 BOM.",
)  # fmt: skip
@click.pass_context
def export(
    ctx: click.Context, fmt: str, workflow_name: str | None, output: str | None, spreadsheet: bool
) -> None:
    """Export every answer, by occurrence and défi, as CSV or JSON, with its whole text."""
    from pathlib import Path

    from .admin import reports

    engine = _engine(ctx, preflight=False)
    workflow = _workflow(engine, workflow_name) if workflow_name else None
    data = reports.export_answers(engine, fmt, workflow, spreadsheet=spreadsheet)
    if output:
        Path(output).write_text(data)
    else:
        click.echo(data, nl=False)


@cli.command()
@click.pass_context
def roster(ctx: click.Context) -> None:
    """Show the défis, their members and the staff, as stored; addresses no longer mailed."""
    from .programme.roster import stored_roster
    from .store.outgoing import suppressions

    engine = _engine(ctx, preflight=False)
    stored = stored_roster(engine.db)
    blocked = suppressions(engine.db)
    listed = {m.address for d in stored.defis for m in d.members}
    listed |= {s.address for s in stored.staff} | {m.address for m in stored.mentors}
    others = sorted(a for a in blocked if a not in listed)
    _say(engine, "reports/roster", {"roster": stored, "suppressed": blocked, "others": others})


@cli.command()
@click.option("--all", "show_all", is_flag=True, help="Past and cancelled events too.")
@click.option("--attendance", is_flag=True, help="Who accepted, declined, did not answer.")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
    help="json: each occurrence with its id, uid, recurrence_id, start and attendance counts.",
)  # fmt: skip
@click.pass_context
def events(ctx: click.Context, show_all: bool, attendance: bool, fmt: str) -> None:
    """Show the events as stored (after reading the planning file and the calendar)."""
    from .programme.attendance import headcounts
    from .programme.events import stored_events

    engine = _engine(ctx, preflight=False)
    now = dt.datetime.now(dt.UTC)
    engine.sync_events(now)
    tz = engine.config.timezone
    found = stored_events(engine.db, None if show_all else now)
    counts = headcounts(engine.db, found, tz) if attendance or fmt == "json" else None
    if fmt == "json":
        import json

        assert counts is not None
        listed = [_event_json(e.as_context(tz), counts[e.id]) for e in found]
        click.echo(json.dumps(listed, ensure_ascii=False, indent=2))
        return
    context: dict[str, Any] = {"events": [e.as_context(tz) for e in found], "all": show_all}
    if counts is not None:
        context["attendance"] = counts
    _say(engine, "reports/events", context)


def _event_json(event: dict[str, Any], headcount: dict[str, Any]) -> dict[str, Any]:
    """An occurrence as ``events --format json`` lists it (instants in local time, ISO 8601)."""
    found = {k: event[k] for k in ("id", "uid", "title", "kind", "status")}
    found["recurrence_id"] = event["recurrence_id"] or None
    found |= {"starts": event["starts"].isoformat(), "ends": event["ends"].isoformat()}
    found |= {"all_day": event["all_day"], "place": event["place"], "sequence": event["sequence"]}
    found["attendance"] = headcount["counts"]
    return found


@cli.command()
@click.pass_context
def doctor(ctx: click.Context) -> None:
    """Check the config, database, workflows, roster and both mail servers, in plain words."""
    from .admin.doctor import checks

    failed = 0
    for check in checks(ctx.obj["config_path"]):
        mark = "FAIL" if not check.ok else "WARN" if check.warning else "ok  "
        click.echo(f"{mark} {check.name}: {check.detail}")
        failed += not check.ok
    if failed:
        click.echo(f"{failed} problem{'s' if failed > 1 else ''} found", err=True)
        sys.exit(1)


@cli.command()
@click.option("--once", is_flag=True, help="One pass (ingest, steps, delivery), then exit.")
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option("--heartbeat", type=float, default=60.0, show_default=True,
              help="Seconds between ticks when nothing else wakes the daemon.")  # fmt: skip
@click.option("--no-idle", is_flag=True, help="Poll the mailbox instead of IMAP IDLE.")
@click.option("--clock-file", type=click.Path(exists=True, dir_okay=False),
              help="Read the current instant from this file (tests and rehearsals).")  # fmt: skip
@click.pass_context
def run(
    ctx: click.Context, once: bool, log_format: str, heartbeat: float, no_idle: bool,
    clock_file: str | None,
) -> None:  # fmt: skip
    """Run the daemon: IMAP IDLE on the shared mailbox, every step on time, until SIGTERM."""
    import logging
    from pathlib import Path

    from .running.clock import FileClock
    from .running.daemon import Daemon
    from .running.logs import setup_logging

    setup_logging(logging.INFO, log_format)
    engine = _engine(ctx)
    engine.config.require_secrets()
    if clock_file and not engine.config.rehearsal:
        raise ClockError(
            "--clock-file moves time by hand: only a rehearsal install may use it "
            "(set rehearsal = true in [mailflow])"
        )
    clock = FileClock(Path(clock_file), engine.config.timezone) if clock_file else None
    daemon = Daemon(engine, clock, heartbeat=heartbeat, idle=not no_idle)
    sys.exit(daemon.run(once=once))


@cli.command()
@click.option("--host", help="Listen on this address (default: [archive] host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), help="Default: [archive] port, 8001.")
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Serve the read-only web archive of the database (Datasette), beside the daemon.

    Needs the extra mailflow[archive] and the staff's logins in the secrets file
    ($MAILFLOW_ARCHIVE_PASSWORDS: name:hash pairs from `datasette hash-password`).
    """
    import dataclasses

    from .archive.serve import serve as run_serve

    config = _config(ctx)
    if config.archive is not None and (host or port):
        archive = dataclasses.replace(
            config.archive, host=host or config.archive.host, port=port or config.archive.port
        )
        config = dataclasses.replace(config, archive=archive)
    run_serve(config, click.echo)


@cli.command()
@click.option(
    "--dir", "folder", type=click.Path(file_okay=False), default="demo", show_default=True,
    help="Where the demo's config, roster and database are written.",
)  # fmt: skip
@click.option("--friday", type=click.DateTime(["%Y-%m-%d"]), help="Default: the coming Friday.")
@click.option(
    "--language", default="fr", show_default=True,
    help="The demo config's language (one of the templates'): what the demo says, and its mail.",
)  # fmt: skip
def demo(folder: str, friday: dt.datetime | None, language: str) -> None:
    """Play a whole Friday of the retrospective on loopback Dovecot and SMTP servers."""
    from pathlib import Path

    from .admin.demo import next_friday, run_demo

    day = friday.date() if friday else next_friday(dt.date.today())
    from .config import shipped

    _check_language(shipped("templates"), language)
    run_demo(Path(folder), day, click.echo, language=language, program=_program())


def _check_language(templates: Path, language: str) -> None:
    from .config import template_languages

    known = template_languages(templates)
    if language not in known:
        raise click.BadParameter(f"{language!r} is none of the templates' ({', '.join(known)})",
                                 param_hint="--language")  # fmt: skip


def _program() -> str:
    """How to run this same ``mailflow`` again: its name when it is the one on the PATH."""
    import shutil
    from pathlib import Path

    program = sys.argv[0]
    if program.endswith("__main__.py"):
        return f"{sys.executable} -m mailflow"
    found = shutil.which("mailflow")
    if found and Path(found).resolve() == Path(program).resolve():
        return "mailflow"
    try:  # the demo's folder is named from the current directory: the command too
        return str(Path(program).absolute().relative_to(Path.cwd()))
    except ValueError:
        return program


def main() -> None:
    cli()
