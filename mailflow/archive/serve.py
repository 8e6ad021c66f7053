"""``mailflow serve``: build the archive, keep it up to date beside the daemon, serve it.

The archive database is rebuilt whole at start (the workflows, the wording or the language
may have changed since), then refreshed by a thread whenever the live database has changed
(``PRAGMA data_version``), at most every ``[archive] refresh``. The live database is only
ever opened read-only.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..config import Config
from ..programme.workflow import load_workflows
from ..sending.render import Renderer
from ..store.archive import (
    Archive,
    ArchiveError,
    Source,
    answer_count,
    columns_of,
    data_version,
    open_live,
)
from ..store.archive_views import Views, build_views
from . import site

log = logging.getLogger(__name__)


def require_extra() -> None:
    """A clear line when the optional extra that serves the archive is not installed."""
    try:
        import datasette  # noqa: F401
        import datasette_auth_passwords  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise ArchiveError(
            f"the archive needs the optional extra mailflow[archive] ({e.name} is missing):"
            " pip install 'mailflow[archive]'"
        ) from None


@dataclass
class Prepared:
    """An archive built and ready to serve."""

    archive: Archive
    live: sqlite3.Connection
    app: object
    answers: int
    logins: list[str]


def build(config: Config, wording: dict[str, Any]) -> tuple[Archive, sqlite3.Connection, Views]:
    """The archive database built anew from the live one, with its views; the live connection."""
    if config.archive is None:
        raise ArchiveError("this configuration has no [archive] settings")
    source = Source(load_workflows(config.workflows_dir), config.timezone)
    live = open_live(config.database)
    archive = Archive(config.archive.database, source)
    try:
        archive.rebuild(live)
        views = build_views(source, wording)
        archive.execute_script(views.statements)
    except sqlite3.Error as e:
        archive.close()
        live.close()
        raise ArchiveError(f"the archive of {config.database} could not be built: {e}") from None
    return archive, live, views


def prepare(config: Config) -> Prepared:
    """Check the logins, build the archive database and its views, make the Datasette app."""
    require_extra()
    if config.archive is None:
        raise ArchiveError("this configuration has no [archive] settings")
    accounts = config.archive.require_accounts()
    wording = site.load_wording(config)
    archive, live, views = build(config, wording)
    assert archive.conn is not None
    answers = answer_count(archive.conn)
    columns = {v.name: columns_of(archive.conn, v.name) for v in views.views}
    app = site.datasette(config, site.metadata(config, views, wording, accounts, columns)).app()
    return Prepared(archive, live, app, answers, sorted(accounts))


class Refresher(threading.Thread):
    """Refreshes the archive each time the live database has changed, until stopped."""

    def __init__(self, prepared: Prepared, seconds: float) -> None:
        super().__init__(name="archive-refresh", daemon=True)
        self.prepared = prepared
        self.seconds = seconds
        self.stopped = threading.Event()

    def run(self) -> None:
        live = self.prepared.live
        version = data_version(live)
        while not self.stopped.wait(self.seconds):
            try:
                now = data_version(live)
                if now == version:
                    continue
                done = self.prepared.archive.refresh(live)
                version = now
                if done.changed:
                    log.info("archive refreshed: %s", done)
            except sqlite3.Error as e:  # a busy or briefly unreadable database: next time
                log.warning("archive not refreshed: %s", e)

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=10)


def _server_class() -> type:
    from types import FrameType

    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            """Stop gracefully and exit 0 on SIGTERM, as the daemon does (uvicorn would
            otherwise raise the signal again once stopped, and die by it)."""
            super().handle_exit(sig, frame)
            captured = getattr(self, "_captured_signals", None)
            if isinstance(captured, list):
                captured.clear()

    return Server


def _check_port(host: str, port: int) -> None:
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            raise ArchiveError(
                f"cannot listen on {host} port {port} ({e.strerror}): set [archive] host and port"
            ) from None


def serve(config: Config, say: Callable[[str], None]) -> None:
    """Serve the archive until interrupted (SIGINT or SIGTERM)."""
    require_extra()
    import uvicorn

    assert config.archive is not None
    archive = config.archive
    _check_port(archive.host, archive.port)
    prepared = prepare(config)
    refresher = Refresher(prepared, archive.refresh.total_seconds())
    refresher.start()
    host = f"[{archive.host}]" if ":" in archive.host else archive.host
    context = {
        "database": str(config.database), "url": f"http://{host}:{archive.port}{archive.base_url}",
        "logins": len(prepared.logins), "names": ", ".join(prepared.logins),
        "seconds": int(archive.refresh.total_seconds()), "answers": prepared.answers,
    }  # fmt: skip
    renderer = Renderer(site.templates(config), config.timezone)
    say(renderer.text("archive/serving", config.language, context).rstrip("\n"))
    settings = uvicorn.Config(
        prepared.app, host=archive.host, port=archive.port, log_level="warning",  # type: ignore[arg-type]
        lifespan="on", proxy_headers=True, server_header=False,
    )  # fmt: skip
    try:
        _server_class()(settings).run()
    finally:
        refresher.stop()
        prepared.archive.close()
        prepared.live.close()
