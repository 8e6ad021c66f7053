"""The web archive in a real browser: Debian's chromium, driven by Playwright.

Playwright's own browser download is never used: the tests launch the system's
``/usr/bin/chromium`` (installed by ``.ci/setup``). A member of the staff logs in, searches
a word written in one answer (without its accents), opens that défi's history and
downloads its CSV; without logging in, the same pages send back to the login; the token
secret is nowhere, even through the SQL box.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from .archive_support import PASSWORD, SECRET, Served, answered_friday
from .conftest import SCREENSHOTS
from .test_archive import _with_generated_secret


@pytest.fixture
def site(programme, tmp_path) -> Iterator[tuple[Any, Served]]:
    p = programme({"alpha": 1, "beta": 1, "gamma": 1})
    answered_friday(p)
    _with_generated_secret(p.config.database)
    server = Served(p.config.path, tmp_path / "serve.log")
    yield p, server
    assert server.stop() == 0


def _log_in(page: Any, server: Served) -> None:
    page.goto(f"{server.url}/")
    assert page.url == f"{server.url}/-/login"
    assert page.locator("h1").inner_text() == "Connexion aux archives"
    page.fill("#id_username", "soizic")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{server.url}/")


def test_log_in_search_open_the_history_and_download_its_csv(browser, site, tmp_path):
    _, server = site
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    _log_in(page, server)
    page.click("text=Archives")
    page.click("a[href='/archive/reponses_retro']")
    assert "Réponses — Rétrospective hebdomadaire" in page.locator("h1").inner_text()
    # "préproduction" is in Beta's answer only; typed without its accents.
    page.fill("#_search", "preproduction")
    page.press("#_search", "Enter")
    page.wait_for_url("**_search=preproduction**")
    headers = page.locator("table.rows-and-columns th").all_inner_texts()
    rows = page.locator("table.rows-and-columns tbody tr")
    column = [h.strip() for h in headers].index("défi")
    assert [r.locator("td").nth(column).inner_text() for r in rows.all()] == ["Beta"]
    if SCREENSHOTS:
        page.screenshot(path=str(SCREENSHOTS / "search.png"), full_page=True)
    page.goto(f"{server.url}/archive")
    page.click("text=Historique d'un défi")
    page.fill("input[name='défi']", "Beta")
    page.click("input[type=submit]")
    page.wait_for_url("**d%C3%A9fi=Beta**")
    assert "la convention est signée" in page.content()
    csv_link = page.locator("p.export-links a", has_text="CSV").get_attribute("href")
    assert csv_link is not None
    with page.expect_download() as downloading:
        page.evaluate("url => { window.location.href = url + '&_dl=1' }", csv_link)
    download = downloading.value
    saved = tmp_path / "history.csv"
    download.save_as(saved)
    rows = list(csv.DictReader(io.StringIO(saved.read_text())))
    assert [r["défi"] for r in rows] == ["Beta"]
    assert rows[0]["difficultés"] == "la préproduction tombe"
    context.close()


PAGES = ["/archive", "/archive/reponses_retro?_search=preproduction",
         "/archive/historique_d_un_defi?d%C3%A9fi=Beta", "/archive/historique_d_un_defi.csv",
         "/archive?sql=select+*+from+base_answers"]  # fmt: skip


def test_without_a_login_every_page_sends_to_the_login(browser, site):
    _, server = site
    context = browser.new_context()
    page = context.new_page()
    for path in PAGES:
        page.goto(f"{server.url}{path}")
        assert page.url == f"{server.url}/-/login", path
        assert "préproduction" not in page.content(), path
    answer = page.goto(f"{server.url}/-/metadata")  # introspection: for nobody
    assert answer is not None and answer.status == 404
    context.close()


def test_the_secret_is_unreachable_from_the_browser(browser, site):
    p, server = site
    context = browser.new_context()
    page = context.new_page()
    _log_in(page, server)
    for sql in (
        "select * from settings", "select value from settings where key = 'token_secret'",
        "select * from messages", "select group_concat(sql) from sqlite_master",
    ):  # fmt: skip
        page.goto(f"{server.url}/archive?sql={quote(sql)}")
        assert SECRET not in page.content(), sql
    page.goto(f"{server.url}/archive?sql={quote('select * from settings')}")
    assert "no such table: settings" in page.content()
    for table in ("settings", "messages", "outbox", "inbound"):
        answer = page.goto(f"{server.url}/archive/{table}")
        assert answer is not None and answer.status == 404, table
    assert SECRET not in Path(p.config.archive.database).read_bytes().decode("utf-8", "replace")
    context.close()
