"""Templates into text: jinja2 renders a mail's subject, text and HTML (``message`` builds it).

Each mail is a pair of templates in ``templates/``: ``NAME.LANG.txt.j2`` (required; its
first line is ``Subject: …``) and ``NAME.LANG.html.j2`` (optional). Undefined variables
are errors, the HTML is autoescaped, and what people wrote only ever enters a template
as a variable: mail content is never evaluated as template code.
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import jinja2.bccache
import markupsafe

from .. import dates
from ..errors import TemplateError
from ..store import caches
from ..store.db import Database


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str | None = None


@dataclass(frozen=True)
class Attachment:
    """An extra part: a calendar invitation, for instance."""

    content: bytes
    maintype: str
    subtype: str
    filename: str | None = None
    params: tuple[tuple[str, str], ...] = ()
    inline: bool = False


# Control characters but tab and newline: what people wrote (a NUL, an ESC sequence, a
# BEL) is printed into mail through every ``{{ }}``, and must not reach a reader's screen.
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")
SUBJECT_LIMIT = 200  # characters of a header value; longer ones end with an ellipsis


def short(value: str) -> str:
    """One line of at most ``SUBJECT_LIMIT`` characters: no line break, no control character."""
    value = " ".join(CONTROL.sub(" ", value).split())
    return value if len(value) <= SUBJECT_LIMIT else value[: SUBJECT_LIMIT - 1].rstrip() + "…"


def _printable(value: Any) -> Any:
    # Markup (a template's own ``|safe`` text) is not what people wrote: a plain ``str``
    # back from ``sub`` would be escaped again and show its entities.
    if isinstance(value, markupsafe.Markup) or not isinstance(value, str):
        return value
    return CONTROL.sub("", value)


class KeptCode(jinja2.BytecodeCache):
    """Compiled templates kept in the database: a command that shows one report does not
    compile its template again (a few tens of milliseconds). Jinja2 checks each against its
    source's checksum and its own version; a database that cannot be read or written (busy,
    read-only, another thread's) only means compiling again."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with suppress(sqlite3.Error):
            code = caches.compiled(self.db, bucket.key, bucket.checksum)
            if code is not None:
                bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with suppress(sqlite3.Error):
            caches.keep_compiled(self.db, bucket.key, bucket.checksum, bucket.bytecode_to_string())


class Renderer:
    """The templates of one folder, loaded once."""

    def __init__(
        self, folder: Path, tz: dt.tzinfo | None = None, code: jinja2.BytecodeCache | None = None
    ) -> None:
        """``tz``: the programme's time zone; every date or time printed is shown in it.
        ``code``: where compiled templates are kept between processes (``KeptCode``)."""
        self.folder = folder
        self.tz = tz
        self._undeclared: dict[str, set[str]] = {}
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(folder)),
            finalize=_printable,
            undefined=jinja2.StrictUndefined,
            autoescape=lambda name: (name or "").endswith(".html.j2"),
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            bytecode_cache=code,
        )
        local = self._local
        self.env.filters["date_fr"] = lambda d, style="long": dates.day(local(d), "fr", style)
        self.env.filters["date_en"] = lambda d, style="long": dates.day(local(d), "en", style)
        self.env.filters["hour"] = lambda t, language="fr": dates.hour(local(t), language)
        self.env.filters["month_fr"] = lambda d: dates.month(local(d), "fr")
        self.env.filters["month_en"] = lambda d: dates.month(local(d), "en")
        self.env.filters["moment"] = lambda d, language="fr": dates.moment(local(d), language)

    def _local(self, value: Any) -> Any:
        """An instant in the programme's time zone (dates and naive times are left alone)."""
        if isinstance(value, dt.datetime) and value.tzinfo is not None and self.tz is not None:
            return value.astimezone(self.tz)
        return value

    def exists(self, name: str, language: str) -> bool:
        return (self.folder / f"{name}.{language}.txt.j2").is_file()

    def check(self, name: str, language: str) -> None:
        """Raise ``TemplateError`` unless the template exists and compiles."""
        for suffix in ("txt.j2", "html.j2"):
            path = f"{name}.{language}.{suffix}"
            if suffix == "html.j2" and not (self.folder / path).is_file():
                continue
            self._template(path)

    def undeclared(self, name: str, language: str, context: dict[str, Any]) -> None:
        """Raise ``TemplateError`` when a template uses, in any branch, a name not in ``context``.

        Rendering only reaches the branches its context takes; this reads them all.
        """
        for suffix in ("txt.j2", "html.j2"):
            path = f"{name}.{language}.{suffix}"
            if not (self.folder / path).is_file():
                continue
            missing = sorted(self._names(path) - context.keys() - self.env.globals.keys())
            if missing:
                listed = ", ".join(repr(m) for m in missing)
                raise TemplateError(f"template {path}: {listed} is undefined (not given to it)")

    def _names(self, path: str) -> set[str]:
        """The names a template reads from its context (parsed once)."""
        if path not in self._undeclared:
            from jinja2 import meta

            source = (self.folder / path).read_text()
            try:
                names = meta.find_undeclared_variables(self.env.parse(source))
            except jinja2.TemplateSyntaxError as e:
                raise TemplateError(f"template {path}, line {e.lineno}: {e.message}") from None
            self._undeclared[path] = set(names)
        return self._undeclared[path]

    def _template(self, path: str) -> jinja2.Template:
        try:
            return self.env.get_template(path)
        except jinja2.TemplateNotFound:
            raise TemplateError(f"template {path} not found in {self.folder}") from None
        except jinja2.TemplateSyntaxError as e:
            raise TemplateError(f"template {path}, line {e.lineno}: {e.message}") from None

    def render(self, name: str, language: str, context: dict[str, Any]) -> Rendered:
        """Render both parts; the text template's first line gives the subject."""
        text = self._render(f"{name}.{language}.txt.j2", context)
        first, _, body = text.partition("\n")
        if not first.lower().startswith("subject:"):
            raise TemplateError(f"template {name}.{language}.txt.j2 must start with 'Subject: '")
        html_path = f"{name}.{language}.html.j2"
        html = self._render(html_path, context) if (self.folder / html_path).is_file() else None
        return Rendered(short(first.split(":", 1)[1].strip()), body.lstrip("\n"), html)

    def text(self, name: str, language: str, context: dict[str, Any]) -> str:
        """A text that is not a mail (what a command prints): ``NAME.LANG.txt.j2``, whole."""
        return self._render(f"{name}.{language}.txt.j2", context)

    def _render(self, path: str, context: dict[str, Any]) -> str:
        template = self._template(path)
        try:
            return template.render(**context)
        except jinja2.UndefinedError as e:
            raise TemplateError(f"template {path}: {e.message}") from None
        except jinja2.TemplateError as e:
            raise TemplateError(f"template {path}: {e}") from None
