"""The archive as Datasette shows it: metadata in the staff's language, logins, settings.

Titles, descriptions and the names of views, columns and canned queries come from the
wording file ``templates/archive/archive.LANG.toml`` (LANG from ``[mailflow] language``);
the login page is ``templates/archive/datasette/password_login.html``. A site whose own
templates predate the archive uses the shipped ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import Config, shipped
from ..store.archive_views import Views
from ..tomltable import load_toml

DATABASE = "archive"  # its name in the archive's addresses: /archive/...


def templates(config: Config) -> Path:
    """The templates folder holding the archive's: the site's own, else the shipped one."""
    own = config.templates_dir / "archive"
    return own.parent if own.is_dir() else shipped("templates")


def load_wording(config: Config) -> dict[str, Any]:
    return load_toml(templates(config) / "archive" / f"archive.{config.language}.toml")


def metadata(
    config: Config, views: Views, wording: dict[str, Any], accounts: dict[str, str],
    columns: dict[str, list[str]],
) -> dict[str, Any]:  # fmt: skip
    """Datasette's metadata: who may see what, what each view and query is called.

    ``columns``: each view's columns, to describe those it has.
    """
    assert config.archive is not None
    logins = sorted(accounts)
    tables: dict[str, Any] = {name: {"hidden": True} for name in BASE_TABLES}
    described = {
        wording["columns"][key]: text
        for key, text in wording.get("column_descriptions", {}).items()
        if key in wording["columns"]
    }
    for shown in views.views:
        table: dict[str, Any] = {"title": shown.title, "description": shown.description}
        known = {c: described[c] for c in columns.get(shown.name, []) if c in described}
        if known:
            table["columns"] = known
        if shown.sort_desc:
            table["sort_desc"] = shown.sort_desc
        if shown.search:
            table |= {"fts_table": "base_answers_fts",
                      "fts_pk": wording["columns"]["message"]}  # fmt: skip
        tables[shown.name] = table
    queries = {
        q.name: {"sql": q.sql, "title": q.title, "description": q.description}
        for q in views.queries
    }
    auth = {f"{name}_password_hash": hashed for name, hashed in accounts.items()}
    return {
        "title": wording["title"],
        "description": wording["description"],
        "allow": {"id": logins},
        "allow_sql": {"id": logins} if config.archive.sql else False,
        "databases": {
            DATABASE: {"title": wording["database"], "tables": tables, "queries": queries}
        },
        "plugins": {
            "datasette-auth-passwords": auth,
            "mailflow-archive": {"accounts": logins, "login": wording["login"]},
        },
    }


# The tables under the views, hidden from the lists (nothing in them is secret).
BASE_TABLES = (
    "base_meta", "base_respondents", "base_answers", "base_answers_fts", "base_asked",
    "base_invitations", "base_participation", "base_events", "base_help",
    *(f"base_answers_fts_{s}" for s in ("data", "idx", "docsize", "config")),
)  # fmt: skip


def datasette(config: Config, metadata: dict[str, Any]) -> Any:
    """A Datasette instance serving the archive database, read-only, behind the guard."""
    from datasette.app import Datasette
    from datasette.database import Database

    from . import guard

    assert config.archive is not None
    guard.register()
    instance = Datasette(
        metadata=metadata,
        template_dir=str(templates(config) / "archive" / "datasette"),
        secret=config.archive.secret,
        settings={
            "base_url": config.archive.base_url,
            "allow_download": False,
            "suggest_facets": False,
            # An answer is long to read: twenty a page, the next ones a click away.
            "default_page_size": 20,
            "sql_time_limit_ms": 3000,
        },
    )
    if "_memory" in instance.databases:
        instance.remove_database("_memory")
    archive = Database(instance, path=str(config.archive.database), is_mutable=True)
    instance.add_database(archive, name=DATABASE)
    return instance
