"""The monthly report to the staff: participation by défi and by week, silences, needs."""

from __future__ import annotations

import shutil

from mailflow.localmail import clients

from .conftest import ROOT, SCREENSHOTS, text_of


def test_the_month_in_numbers_reaches_the_staff(programme, tmp_path, browser):
    workflows = tmp_path / "workflows"
    workflows.mkdir()
    for name in ("retro", "report"):
        shutil.copy(ROOT / "workflows" / f"{name}.toml", workflows)
    p = programme({"alpha": 1, "beta": 1, "gamma": 1}, mailflow={"workflows": str(workflows)})
    a0, b0 = p.defis["alpha"][0], p.defis["beta"][0]
    replies = 0
    for friday in ("2026-11-06", "2026-11-13", "2026-11-20", "2026-11-27"):
        p.tick(f"{friday}T09:00:00+01:00")
        answering = [a0] if friday != "2026-11-06" else [a0, b0]
        for member in answering:
            request = p.localmail.fetch(member)[-1]
            body = f"Victoires :\nune\n\nBesoins :\nun besoin du {friday}"
            p.swaks(clients.gmail(request, member, "X", body), member)
            replies += 1
        p.wait_shared(replies)
        for time in ("12:00", "14:00", "15:00"):
            p.tick(f"{friday}T{time}:00+01:00")
    p.tick("2026-11-30T17:00:00+01:00")  # the last working day of November
    [report] = [m for m in p.inbox(p.staff[0]) if "Le mois en chiffres" in str(m["Subject"])]
    text = text_of(report)
    assert "semaine 45 (vendredi 6 novembre) : 2 sur 3 (67 %)" in text
    assert "semaine 48 (vendredi 27 novembre) : 1 sur 3 (33 %)" in text
    alpha = next(line for line in text.splitlines() if line.strip().startswith("Alpha"))
    assert alpha.split()[-2:] == ["xxxx", "4/4"]
    silent = text[text.index("Silencieux") : text.index("Les besoins")]
    assert "Beta (dernière réponse : vendredi 6 novembre)" in silent
    assert "Gamma (aucune réponse)" in silent and "Alpha" not in silent
    assert "Alpha, semaine 48 : un besoin du 2026-11-27" in text
    html = text_of(report, "html")
    assert html.count('class="bar"') == 4 and 'data-percent="67"' in html
    _bars_drawn_to_scale(browser, html)
    preview = p.run("report", "--month", "2026-11", "--preview").output
    assert preview.startswith("(Ce récapitulatif est parti le") or "Le mois en chiffres" in preview


def _bars_drawn_to_scale(browser, html: str) -> None:
    """The weekly bars, as a mail client's HTML engine draws them: as wide as their share."""
    page = browser.new_page(viewport={"width": 800, "height": 1200})
    page.set_content(html)
    bars = page.locator("td.bar")
    widths = {}
    for i in range(bars.count()):
        box = bars.nth(i).bounding_box()
        assert box is not None and box["height"] >= 10, box  # drawn, not collapsed
        widths[int(bars.nth(i).get_attribute("data-percent"))] = box["width"]
    assert sorted(widths) == [33, 67], widths  # 2 of 3 the first week, then 1 of 3
    assert widths[67] > 1.9 * widths[33]
    for percent, width in widths.items():
        assert abs(width - 3 * percent) <= 3, (percent, width)  # 300 px for 100 %
    alpha = page.locator("tr", has_text="Alpha").last.inner_text()
    assert alpha.split() == ["Alpha", "✓", "✓", "✓", "✓", "4/4"], alpha
    chart = page.locator("table.chart").bounding_box()
    assert chart is not None and chart["width"] <= 800  # no sideways scrolling
    if SCREENSHOTS:
        page.screenshot(path=str(SCREENSHOTS / "monthly-report.png"), full_page=True)
    page.close()
