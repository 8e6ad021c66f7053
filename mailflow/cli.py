"""The ``mailflow`` command: a thin click layer, each command calling one library function."""

from __future__ import annotations

import json
import logging
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import click

from . import __version__
from .config import PROJECT_DIR, Config, load_config
from .db import open_db
from .errors import ConfigError, MailflowError
from .ingest import ingest as run_ingest
from .parse import parse_message
from .workflow import collect_spec


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
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    ctx.obj = {"config_path": config_path}


def _config(ctx: click.Context) -> Config:
    return load_config(ctx.obj["config_path"])


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False), default="mailflow.toml")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(path: str, force: bool) -> None:
    """Write a commented example config to PATH (default ./mailflow.toml)."""
    target = Path(path)
    if target.exists() and not force:
        raise click.ClickException(f"{target} exists (use --force to overwrite)")
    example = resources.files("mailflow").joinpath("defaults/mailflow.toml").read_text()
    target.write_text(example)
    click.echo(f"wrote {target}: edit it, then set the *_env variables it names")


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--workflows", "workflows_dir", type=click.Path(file_okay=False, exists=True),
    help="Folder of workflows whose headings split the text (default: the configured one).",
)  # fmt: skip
@click.pass_context
def parse(ctx: click.Context, files: tuple[str, ...], workflows_dir: str | None) -> None:
    """Print what mailflow understands of each FILE.eml, as JSON.

    One object for one file, a list for several. Never fails on a malformed message:
    what could not be read is listed in "warnings".
    """
    spec = collect_spec(Path(workflows_dir) if workflows_dir else _workflows_dir(ctx))
    results = [parse_message(Path(f).read_bytes(), spec).to_json() for f in files]
    output = results[0] if len(results) == 1 else results
    click.echo(json.dumps(output, ensure_ascii=False, indent=2))


def _workflows_dir(ctx: click.Context) -> Path:
    try:
        return _config(ctx).workflows_dir
    except ConfigError:
        if ctx.obj["config_path"]:
            raise
        return PROJECT_DIR / "workflows"


@cli.command()
@click.pass_context
def ingest(ctx: click.Context) -> None:
    """Store every new message of the configured IMAP folders, then parse them."""
    config = _config(ctx)
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

    report = run_ingest(db, config.imap, collect_spec(config.workflows_dir), progress=progress)
    for f in report.folders:
        extra = " (UIDVALIDITY changed: resynced)" if f.resynced else ""
        click.echo(
            f"{f.folder}: {f.stored} stored, {f.duplicates} already known, "
            f"{f.oversized} too large (quarantined){extra}"
        )
    click.echo(f"parsed {report.parsed}, to retry {report.retry}, quarantined {report.quarantined}")


def main() -> None:
    cli()
