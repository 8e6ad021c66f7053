"""HTML mail turned into the plain text its reader sees, quotes marked with ``>``.

Blockquotes become ``> `` prefixed lines, so that quoted history in HTML-only mail is
recognised by the same rules as in plain text; lists keep their bullets and numbers;
paragraphs, ``<br>`` and table rows keep their line breaks, and cells of a row are
separated by a tab (Outlook's tables of headings and answers read as "heading<TAB>answer").
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_BLOCK = {
    "address", "article", "aside", "center", "dd", "div", "dl", "dt", "fieldset", "figure",
    "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "main", "nav",
    "p", "pre", "section", "table", "tbody", "thead", "tfoot", "tr", "ul", "ol",
}  # fmt: skip
_SKIP = {"head", "script", "style", "title", "xml", "template", "noscript"}
_VOID = {"br", "hr", "img", "meta", "link", "input", "col", "area", "base", "wbr"}
_SPACES = re.compile(r"[ \t\r\n\f\u00a0\u202f]+")
MAX_QUOTE_DEPTH = 10
_CHUNK = 64 * 1024  # fed at a time, so that a limit on the text stops the work early


class _TextBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.line = ""
        self.quote_depth = 0
        self.line_depth = 0
        self.skipping: list[str] = []  # open elements whose text is not shown
        self.pre = 0
        self.lists: list[list[int | None]] = []  # [counter] for ol, [None] for ul
        self.pending_prefix = ""
        self.size = 0  # characters in ``lines``

    # -- lines --------------------------------------------------------------------------
    def newline(self, *, force: bool = False) -> None:
        if self.line.strip() or force:
            # Deeper quotes are still quotes: past ten levels the prefix stops growing, so
            # that a crafted nesting cannot make the text grow with its square.
            prefix = "> " * min(self.line_depth, MAX_QUOTE_DEPTH)
            self.lines.append((prefix + self.line.rstrip()).rstrip())
            self.size += len(self.lines[-1]) + 1
        self.line = ""
        self.line_depth = self.quote_depth

    def blank_line(self) -> None:
        self.newline()
        if self.lines and self.lines[-1].strip("> ") != "":
            self.lines.append(("> " * min(self.quote_depth, MAX_QUOTE_DEPTH)).rstrip())

    def write(self, text: str) -> None:
        if not self.line:
            self.line_depth = self.quote_depth
            if self.pending_prefix:
                self.line = self.pending_prefix
                self.pending_prefix = ""
        self.line += text

    # -- parser events ------------------------------------------------------------------
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skipping.append(tag)
            return
        if tag == "body":
            # Browsers close an unclosed <head> when the body starts: so must we.
            self.skipping = [t for t in self.skipping if t not in ("head", "title")]
        if tag == "br":
            self.newline(force=not self.line.strip() and bool(self.lines))
        elif tag == "blockquote":
            self.blank_line()
            self.quote_depth += 1
            self.line_depth = self.quote_depth
        elif tag in ("ul", "ol"):
            self.newline()
            self.lists.append([1 if tag == "ol" else None])
        elif tag == "li":
            self.newline()
            indent = "  " * max(len(self.lists) - 1, 0)
            counter = self.lists[-1][0] if self.lists else None
            if counter is None:
                self.pending_prefix = f"{indent}- "
            else:
                self.pending_prefix = f"{indent}{counter}. "
                self.lists[-1][0] = counter + 1
        elif tag == "p":
            self.blank_line()
        elif tag == "pre":
            self.newline()
            self.pre += 1
        elif tag in _BLOCK:
            self.newline()
        elif tag in ("td", "th") and self.line.strip():
            self.write("\t")  # a column of headings, a column of answers: a tab between
        if tag == "hr":
            self.newline()

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            if tag in self.skipping:
                del self.skipping[len(self.skipping) - 1 - self.skipping[::-1].index(tag)]
            return
        if tag == "blockquote":
            self.newline()
            self.quote_depth = max(self.quote_depth - 1, 0)
            self.line_depth = self.quote_depth
            self.blank_line()
        elif tag in ("ul", "ol"):
            self.newline()
            if self.lists:
                self.lists.pop()
        elif tag == "p":
            self.blank_line()
        elif tag == "pre":
            self.newline()
            self.pre = max(self.pre - 1, 0)
        elif tag in _BLOCK or tag == "li":
            self.newline()

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        if self.pre:
            for i, chunk in enumerate(data.split("\n")):
                if i:
                    self.newline(force=True)
                self.write(chunk)
            return
        text = _SPACES.sub(" ", data)
        if not self.line.strip():
            text = text.lstrip()
        if text:
            self.write(text)

    def result(self) -> str:
        self.newline()
        text = "\n".join(self.lines)
        text = re.sub(r"\n(?:[> ]*\n){2,}", "\n\n", text)
        return text.strip("\n")


def html_to_text(html: str, limit: int | None = None) -> str:
    """The visible text of an HTML document, one line per line the reader would see.

    With ``limit``, conversion stops once about that many characters of text are out.
    """
    builder = _TextBuilder()
    try:
        for start in range(0, len(html), _CHUNK):
            builder.feed(html[start : start + _CHUNK])
            if limit is not None and builder.size > limit:
                break
        builder.close()
    except (AssertionError, ValueError):
        pass  # html.parser gives up on some broken markup: keep what was read so far
    return builder.result()
