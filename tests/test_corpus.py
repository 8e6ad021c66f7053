"""The parse contract on the corpus of real-client replies in ``tests/corpus/``.

Each ``NN-name.eml`` has a ``NN-name.expect.toml`` written from what a careful reader
expects (see ``tests/corpus/README.md``); every message goes through the library and
through the ``mailflow parse`` command.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailflow.cli import cli
from mailflow.programme.workflow import collect_spec
from mailflow.receiving.parse import parse_message

from .conftest import CORPUS, ROOT, corpus_files

SPEC = collect_spec(ROOT / "workflows")
CONTRACT_KEYS = {
    "message_id", "from", "author", "subject", "automatic", "bounced_recipient",
    "calendar_reply", "absent_until", "attachments", "text", "sections",
}  # fmt: skip
SECTIONS = ("victories", "difficulties", "needs")


def expectation(path: Path) -> dict:
    return tomllib.loads(path.with_name(path.stem + ".expect.toml").read_text())


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.stem)
def test_corpus_message(path: Path) -> None:
    expect = expectation(path)
    result = parse_message(path.read_bytes(), SPEC).to_json()
    where = f"{path.name} ({expect.get('description', '')})"

    assert result.keys() >= CONTRACT_KEYS
    assert set(result["sections"]) == set(SECTIONS)
    assert result["from"] == (expect["from"] or None), where
    assert result["message_id"] == (expect["message_id"] or None), where
    automatic = None if expect["automatic"] == "none" else expect["automatic"]
    assert result["automatic"] == automatic, where
    if expect.get("bounced_recipient"):
        assert result["bounced_recipient"] == expect["bounced_recipient"], where
    # Keys a message may leave out of its sidecar: then the author is From, and a message
    # is no calendar reply, states no absence and has no attachment.
    assert result["author"] == (expect.get("author") or expect["from"] or None), where
    assert result["calendar_reply"] == (expect.get("calendar_reply") or None), where
    assert result["absent_until"] == (expect.get("absent_until") or None), where
    assert result["attachments"] == expect.get("attachments", []), where

    text = result["text"]
    for phrase in expect.get("text_contains", []):
        assert phrase in text, f"{where}: missing {phrase!r} in text:\n{text}"
    for phrase in expect.get("text_excludes", []):
        assert phrase not in text, f"{where}: {phrase!r} should not be in text:\n{text}"
    for key in expect.get("null_sections", []):
        assert result["sections"][key] is None, f"{where}: {key} = {result['sections'][key]!r}"
    for key, phrases in expect.get("sections", {}).items():
        content = result["sections"][key]
        assert content is not None, f"{where}: {key} is empty; text:\n{text}"
        for phrase in phrases:
            assert phrase in content, f"{where}: {key} lacks {phrase!r}:\n{content}"
    for key, phrases in expect.get("sections_excludes", {}).items():
        for phrase in phrases:
            assert phrase not in (result["sections"][key] or ""), f"{where}: {key} has {phrase!r}"
    for key, phrase in expect.get("fields", {}).items():
        assert phrase in (result["fields"][key] or ""), f"{where}: field {key}: {result['fields']}"


def test_corpus_covers_the_clients_and_both_languages() -> None:
    expectations = [expectation(p) for p in corpus_files()]
    assert len(expectations) >= 40
    assert sum(e["lang"] == "en" for e in expectations) >= 10
    kinds = {e["automatic"] for e in expectations}
    assert kinds == {"none", "auto-reply", "bounce"}
    clients = {e["client"] for e in expectations}
    for client in ("gmail", "outlook", "thunderbird", "apple-mail", "zimbra", "roundcube"):
        assert any(client in c for c in clients), f"no {client} message in the corpus"


def test_the_command_prints_the_same_json_as_the_library() -> None:
    files = corpus_files()
    result = CliRunner().invoke(
        cli, ["parse", "--workflows", str(ROOT / "workflows"), *map(str, files)]
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert isinstance(printed, list) and len(printed) == len(files)
    for path, data in zip(files, printed, strict=True):
        assert data == parse_message(path.read_bytes(), SPEC).to_json()


def test_one_file_prints_one_object() -> None:
    first = corpus_files()[0]
    result = CliRunner().invoke(cli, ["parse", str(first)])
    assert result.exit_code == 0
    assert json.loads(result.output)["message_id"] == expectation(first)["message_id"]


def test_corpus_readme_lists_every_message() -> None:
    readme = (CORPUS / "README.md").read_text()
    for path in corpus_files():
        number, name = path.stem.split("-", 1)
        assert f"| {number} | `{name}` |" in readme, f"{path.name} not in README"
