"""The README documents every command, and the commands it shows exist."""

from __future__ import annotations

import re

from mailflow.cli import cli

from .conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_every_command_is_documented():
    for name in cli.commands:
        assert f"`mailflow {name}" in README, f"mailflow {name} is not in the README"


def test_every_documented_command_exists():
    for name in re.findall(r"`mailflow ([a-z-]+)", README):
        assert name in cli.commands, f"the README shows mailflow {name}, which does not exist"


def test_the_readme_gives_the_two_commands():
    assert "bash .ci/demo" in README and "bash .ci/run" in README
    assert (ROOT / ".ci" / "demo").exists() and (ROOT / ".ci" / "run").exists()
