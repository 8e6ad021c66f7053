"""Workflows: the TOML files in ``workflows/`` that say what mailflow does and when."""

from __future__ import annotations

from pathlib import Path

from .sections import Heading, SectionSpec, spec_from_table
from .tomltable import Table


def collect_spec(workflows_dir: Path) -> SectionSpec:
    """The headings of every collecting workflow, merged: what a reply may be split into.

    Used where a message is not yet tied to one workflow (``mailflow parse``, ingest);
    once it is, that workflow's own spec applies.
    """
    merged: dict[str, Heading] = {}
    empty: list[str] = []
    for path in sorted(workflows_dir.glob("*.toml")):
        root = Table.from_file(path)
        if not root.has("collect"):
            continue
        spec = spec_from_table(root.table("collect"))
        empty.extend(a for a in spec.empty_answers if a not in empty)
        for heading in spec.headings:
            if heading.key in merged:
                names = merged[heading.key].names
                extra = tuple(n for n in heading.names if n not in names)
                merged[heading.key] = Heading(heading.key, names + extra, heading.kind)
            else:
                merged[heading.key] = heading
    return SectionSpec(tuple(merged.values()), tuple(empty))
