"""The documentation says what mailflow does: every command, every config key and every
template variable is documented, the README stays short, and nothing points outside the
repository."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest

from mailflow import tomltable
from mailflow.cli import cli
from mailflow.config import load_config
from mailflow.sending.render import Renderer

from .conftest import ROOT

README = (ROOT / "README.md").read_text()
DOCS = {p.name: p.read_text() for p in (ROOT / "docs").glob("*.md")}


def test_the_readme_is_short_and_gives_the_two_commands():
    assert len(README.splitlines()) <= 180
    assert "bash .ci/demo" in README and "bash .ci/run" in README
    assert (ROOT / ".ci" / "demo").exists() and (ROOT / ".ci" / "run").exists()


def test_every_command_and_option_is_documented():
    text = DOCS["cli.md"]
    for name, command in cli.commands.items():
        assert f"`mailflow {name}" in text, f"mailflow {name} is not in docs/cli.md"
        row = next(line for line in text.splitlines() if f"`mailflow {name}" in line)
        for param in command.params:
            for option in (o for o in getattr(param, "opts", []) if o.startswith("--")):
                assert option in row, f"mailflow {name} {option} is not in docs/cli.md"


def test_every_documented_command_exists():
    for text in (README, *DOCS.values()):
        for name in re.findall(r"`mailflow ([a-z-]+)", text):
            assert name in cli.commands, f"the docs show mailflow {name}, which does not exist"


def _keys_read(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Every key the config loader reads, as ``table.key``: those of a minimal config, whose
    other keys take their defaults (each is asked for all the same)."""
    seen: set[str] = set()
    raw = tomltable.Table.raw

    def spy(self: tomltable.Table, key: str, default: object = tomltable._MISSING) -> object:
        seen.add(f"{self.prefix}.{key}" if self.prefix else key)
        return raw(self, key, default)

    monkeypatch.setattr(tomltable.Table, "raw", spy)
    folder = Path(tempfile.mkdtemp())
    (folder / "mailflow.toml").write_text(
        '[imap]\nhost = "h"\nusername = "u"\n[smtp]\nhost = "h"\n'
        '[addresses]\nfrom = "a@b.test"\nalias = "c@b.test"\ncohort = "d@b.test"\n'
    )
    load_config(folder / "mailflow.toml", {})
    return {key for key in seen if "." in key}


def test_every_config_key_is_documented(monkeypatch):
    text = DOCS["configuration.md"]
    for key in sorted(_keys_read(monkeypatch)):
        table, name = key.split(".", 1)
        heading = f"### `[{table}]`"
        assert heading in text, f"[{table}] has no section in docs/configuration.md"
        section = text.split(heading, 1)[1].split("\n### ", 1)[0]
        assert f"`{name}`" in section, f"{key} is not in docs/configuration.md"


def test_every_variable_a_template_uses_is_documented():
    text = DOCS["templates.md"]
    renderer = Renderer(ROOT / "templates")
    for path in sorted((ROOT / "templates").rglob("*.j2")):
        for name in renderer._names(str(path.relative_to(ROOT / "templates"))):
            assert f"`{name}`" in text, f"{name}, used by {path.name}, is not in docs/templates.md"


def test_nothing_points_outside_the_repository():
    for name, text in {"README.md": README, **DOCS}.items():
        assert "../" not in text and "shared/" not in text, name
        for link in re.findall(r"\]\(([^)#]+)\)", text):
            if not link.startswith(("http://", "https://")):
                base = ROOT if name == "README.md" else ROOT / "docs"
                assert (base / link).exists(), f"{name} links to {link}, which does not exist"
