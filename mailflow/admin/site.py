"""A site: the folder ``mailflow init`` fills, and how its copies compare to the shipped files.

``init_site(DIR)`` writes a commented config, an example roster and planning, a secrets
file for the service (mode 600) and editable copies of the shipped workflows and
templates, never overwriting a file that is already there. It records the hash of each
shipped file it copies in ``DIR/.mailflow-shipped.json``, so that after an upgrade
``differences`` can tell a file the staff edited from one the new version changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from contextlib import suppress
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from .. import __version__
from ..config import shipped
from ..errors import MailflowError

MANIFEST = ".mailflow-shipped.json"
KINDS = ("workflows", "templates")
SECRETS = "secrets.env"
# The variables the secrets file lists when the config does not name others.
DEFAULT_SECRET_NAMES = {
    "imap": "MAILFLOW_IMAP_PASSWORD",
    "smtp": "MAILFLOW_SMTP_PASSWORD",
    "secret": "MAILFLOW_SECRET",
    "archive_passwords": "MAILFLOW_ARCHIVE_PASSWORDS",
    "archive_secret": "MAILFLOW_ARCHIVE_SECRET",
}


@dataclass
class InitReport:
    """What ``init_site`` did: paths relative to the folder, added and kept as they were."""

    folder: Path
    added: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _defaults(name: str) -> str:
    return resources.files("mailflow").joinpath("defaults", name).read_text(encoding="utf-8")


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def shipped_files(kind: str) -> dict[str, str]:
    """Each shipped file of ``kind`` (path relative to its folder, POSIX style) and its hash."""
    root = shipped(kind)
    return {
        path.relative_to(root).as_posix(): digest(path.read_bytes())
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.name.startswith(".") and "__pycache__" not in path.parts
    }


def init_site(folder: Path, database: str | None = None) -> InitReport:
    """Fill ``folder`` with a complete site; files already there are kept untouched.

    What it creates has the modes the service needs whatever the umask: folders 755 and
    files 644 (nothing secret in them), the secrets file 600. A folder that cannot be
    written is a ``MailflowError`` naming the path.
    """
    try:
        return _init_site(folder, database)
    except OSError as e:
        raise MailflowError(f"cannot make the site in {folder}: {e.strerror}: {e.filename}") from e


def _init_site(folder: Path, database: str | None) -> InitReport:
    _mkdir(folder)
    report = InitReport(folder)
    config = _defaults("mailflow.toml")
    if database is not None:
        config = _with_database(config, database)
    if not _add(folder, "mailflow.toml", config.encode(), report) and database is not None:
        report.notes.append("mailflow.toml was kept: --database was not applied to it")
    _add(folder, "roster.toml", _defaults("site/roster.toml").encode(), report)
    _add(folder, "planning.toml", _defaults("site/planning.toml").encode(), report)
    _add(folder, SECRETS, _secrets(folder / "mailflow.toml").encode(), report, mode=0o600)
    manifest = read_manifest(folder)
    files = dict(manifest.get("files", {}))
    for kind in KINDS:
        source = shipped(kind)
        for name, hashed in shipped_files(kind).items():
            if _add(folder, f"{kind}/{name}", (source / name).read_bytes(), report):
                files[f"{kind}/{name}"] = hashed
    if files != manifest.get("files"):
        text = json.dumps({"mailflow": __version__, "files": dict(sorted(files.items()))}, indent=1)
        (folder / MANIFEST).write_text(text + "\n", encoding="utf-8")
        (folder / MANIFEST).chmod(0o644)  # doctor reads it as any user
    return report


def _add(folder: Path, name: str, data: bytes, report: InitReport, mode: int = 0o644) -> bool:
    """Create ``folder/name`` with ``data`` unless it exists; True when it was created."""
    path = folder / name
    _mkdir(path.parent)
    try:
        # Created with its final mode, so that a secrets file is never readable by others.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        report.kept.append(name)
        return False
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), mode)  # the umask only ever removes permissions
        f.write(data)
    report.added.append(name)
    return True


def _mkdir(path: Path) -> None:
    """Create ``path`` and its missing parents, mode 755."""
    if path.is_dir():
        return
    _mkdir(path.parent)
    with suppress(FileExistsError):
        path.mkdir()
        path.chmod(0o755)


def _with_database(config: str, database: str) -> str:
    line = 'database = "mailflow.db"\n'
    if config.count(line) != 1:
        raise AssertionError("the shipped mailflow.toml has no single database line")
    return config.replace(line, f"database = {json.dumps(database, ensure_ascii=False)}\n")


def _secrets(config: Path) -> str:
    """The secrets file for the variables ``config`` names (the defaults if it cannot be read)."""
    names = dict(DEFAULT_SECRET_NAMES)
    try:
        data = tomllib.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        data = {}
    for key, (table, item) in {
        "imap": ("imap", "password_env"),
        "smtp": ("smtp", "password_env"),
        "secret": ("security", "secret_env"),
        "archive_passwords": ("archive", "passwords_env"),
        "archive_secret": ("archive", "secret_env"),
    }.items():
        value = data.get(table, {}).get(item) if isinstance(data.get(table), dict) else None
        if isinstance(value, str) and value.isidentifier():
            names[key] = value
    return _defaults("site/secrets.env").format(**names)


def read_manifest(folder: Path) -> dict[str, dict[str, str]]:
    """The recorded hashes of the shipped files copied into ``folder`` ({} without any)."""
    path = folder / MANIFEST
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        data = str(e)
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict):
        raise MailflowError(
            f"{path} is damaged ({data if isinstance(data, str) else 'no files'}): delete it "
            f"and run `mailflow init {folder}` again to record the shipped files anew"
        )
    return {"files": {str(k): str(v) for k, v in files.items()}}


@dataclass(frozen=True)
class Difference:
    """One copied file that is not as mailflow shipped it, and what to do about it."""

    path: str  # relative to the site folder, e.g. "templates/retro/request.fr.txt.j2"
    detail: str


def differences(folder: Path, copies: dict[str, Path]) -> list[Difference] | None:
    """How the copies in ``copies`` (kind -> folder) differ from the shipped files.

    None when ``folder`` has no manifest (not made by ``mailflow init``) or no folder is a
    copy (the config names the shipped ones themselves). A file in both states ("modified
    by you and changed in the new version") needs a person to merge them.
    """
    copies = {k: v for k, v in copies.items() if v.resolve() != shipped(k).resolve()}
    manifest = read_manifest(folder) if copies else {}
    if not manifest:
        return None
    recorded = manifest["files"]
    found = []
    for kind, local_root in copies.items():
        source = shipped(kind)
        now = shipped_files(kind)
        base = {k.split("/", 1)[1]: v for k, v in recorded.items() if k.startswith(f"{kind}/")}
        for name in sorted(set(now) | set(base)):
            local = local_root / name
            mine = digest(local.read_bytes()) if local.is_file() else None
            state = _state(base.get(name), now.get(name), mine)
            if state:
                advice = _advice(state, folder, source / name if name in now else None)
                found.append(Difference(f"{kind}/{name}", state + advice))
    return found


def _advice(state: str, folder: Path, shipped_file: Path | None) -> str:
    if state == "changed in the new version":
        return f": delete your copy and run `mailflow init {folder}` to take the new one"
    if state in ("new in this version, not in your copy", "missing from your copy"):
        return f": run `mailflow init {folder}` to add it"
    if shipped_file and state != "modified by you":
        return f": compare with {shipped_file}"
    return ""


def _state(base: str | None, now: str | None, local: str | None) -> str:
    """How a copy compares: hashes when copied (``base``), as shipped now, of the copy."""
    if local == now:
        return ""
    if local is None:
        if now is None:
            return ""
        return "missing from your copy" if base else "new in this version, not in your copy"
    if base is None:
        return "differs from the shipped file"
    mine, theirs = local != base, now != base
    if now is None:
        return "no longer shipped" + (" (modified by you)" if mine else "")
    if mine and theirs:
        return "modified by you and changed in the new version"
    return "modified by you" if mine else "changed in the new version"
