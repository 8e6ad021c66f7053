"""Templates into mail: jinja2 renders, the stdlib builds the MIME message.

Each mail is a pair of templates in ``templates/``: ``NAME.LANG.txt.j2`` (required; its
first line is ``Subject: …``) and ``NAME.LANG.html.j2`` (optional). Undefined variables
are errors, the HTML is autoescaped, and what people wrote only ever enters a template
as a variable: mail content is never evaluated as template code.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import email.utils
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import jinja2

from .errors import TemplateError


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


def _frenchdate(value: dt.date | dt.datetime, style: str = "long") -> str:
    days = ["lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"]
    months = ["janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août",
              "septembre", "octobre", "novembre", "décembre"]  # fmt: skip
    text = f"{days[value.weekday()]} {value.day} {months[value.month - 1]}"
    return text if style == "short" else f"{text} {value.year}"


def _englishdate(value: dt.date | dt.datetime, style: str = "long") -> str:
    text = f"{value:%A} {value.day} {value:%B}"
    return text if style == "short" else f"{text} {value.year}"


def _hour(value: dt.time | dt.datetime, language: str = "fr") -> str:
    if language == "fr":
        return f"{value.hour}h{value.minute:02d}" if value.minute else f"{value.hour}h"
    return value.strftime("%I:%M %p").lstrip("0")


class Renderer:
    """The templates of one folder, loaded once."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(folder)),
            undefined=jinja2.StrictUndefined,
            autoescape=lambda name: (name or "").endswith(".html.j2"),
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self.env.filters["date_fr"] = _frenchdate
        self.env.filters["date_en"] = _englishdate
        self.env.filters["hour"] = _hour

    def exists(self, name: str, language: str) -> bool:
        return (self.folder / f"{name}.{language}.txt.j2").is_file()

    def check(self, name: str, language: str) -> None:
        """Raise ``TemplateError`` unless the template exists and compiles."""
        for suffix in ("txt.j2", "html.j2"):
            path = f"{name}.{language}.{suffix}"
            if suffix == "html.j2" and not (self.folder / path).is_file():
                continue
            self._template(path)

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
        return Rendered(first.split(":", 1)[1].strip(), body.lstrip("\n"), html)

    def _render(self, path: str, context: dict[str, Any]) -> str:
        template = self._template(path)
        try:
            return template.render(**context)
        except jinja2.UndefinedError as e:
            raise TemplateError(f"template {path}: {e.message}") from None
        except jinja2.TemplateError as e:
            raise TemplateError(f"template {path}: {e}") from None


def build_message(
    rendered: Rendered,
    *,
    sender: str,
    sender_name: str,
    to: list[str],
    reply_to: str,
    message_id: str,
    date: dt.datetime,
    attachments: tuple[Attachment, ...] = (),
    headers: tuple[tuple[str, str], ...] = (),
) -> bytes:
    """A multipart/alternative message (plus attachments) ready for SMTP."""
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = Address(display_name=sender_name, addr_spec=sender)
    msg["To"] = ", ".join(to)
    msg["Reply-To"] = reply_to
    msg["Subject"] = rendered.subject
    msg["Date"] = email.utils.format_datetime(date)
    msg["Message-ID"] = message_id
    # RFC 3834: out-of-office robots must not answer; Exchange's own switch for the same.
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    for name, value in headers:
        msg[name] = value
    msg.set_content(rendered.text, cte="quoted-printable")
    if rendered.html is not None:
        msg.add_alternative(rendered.html, subtype="html", cte="quoted-printable")
    for part in attachments:
        _attach(msg, part)
    return msg.as_bytes()


def _attach(msg: EmailMessage, part: Attachment) -> None:
    params = dict(part.params)
    if part.inline:
        # A calendar invitation is an alternative of the text, as Outlook and Gmail expect.
        body = msg.get_body(("related", "html", "plain"))
        target = msg if msg.is_multipart() else body
        assert target is not None
        target.add_alternative(
            part.content.decode("utf-8"), subtype=part.subtype, params=params, cte="8bit"
        )
        return
    msg.add_attachment(
        part.content, maintype=part.maintype, subtype=part.subtype, filename=part.filename,
        params=params,
    )  # fmt: skip
