"""No programme wording or French in Python: what people read comes from templates/.

String literals of mailflow's modules (docstrings apart) must not carry French words or
accented letters. The modules that recognise what people wrote (attributions, signatures,
sign-offs, footers, disclaimers of French mail clients, out-of-office dates) are exempt:
they read, they write nothing.
"""

from __future__ import annotations

import ast
import re

from .conftest import ROOT

FRENCH = re.compile(
    r"[àâçéèêëîïôûùüÿœæ]|\b(semaine|vendredi|lundi|récapitulatif|promo|défis?|équipe|equipe"
    r"|bonjour|merci|rappel|besoins|victoires|difficultés)\b",
    re.IGNORECASE,
)
READERS = {
    "receiving/reply.py",
    "receiving/automatic.py",
    "receiving/sections.py",
    "receiving/signoff.py",
    "receiving/absence.py",
}


def _strings(path):
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        is_text = isinstance(node, ast.Constant) and isinstance(node.value, str)
        if is_text and id(node) not in docstrings:
            yield node.lineno, node.value


def test_python_holds_no_french_nor_programme_wording():
    found = []
    package = ROOT / "mailflow"
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package).as_posix()
        if relative in READERS or relative.startswith("localmail/"):
            continue
        found += [f"{relative}:{n}: {s[:60]!r}" for n, s in _strings(path) if FRENCH.search(s)]
    assert not found, "wording belongs in templates/:\n" + "\n".join(found)
