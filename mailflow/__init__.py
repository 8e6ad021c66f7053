"""mailflow: an email-first workflow engine.

The library is the product; the ``mailflow`` command is a thin layer over it. Start with
``load_config``, ``open_db``, ``ingest`` and ``parse_message``. They are imported on
first use, so that importing the package (as every ``mailflow`` command does) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Config": "config",
    "load_config": "config",
    "open_db": "db",
    "ConfigError": "errors",
    "MailServerError": "errors",
    "MailflowError": "errors",
    "ingest": "ingest",
    "ParsedMessage": "parse",
    "parse_message": "parse",
}

__all__ = [
    "Config",
    "ConfigError",
    "MailServerError",
    "MailflowError",
    "ParsedMessage",
    "ingest",
    "load_config",
    "open_db",
    "parse_message",
]

if TYPE_CHECKING:
    from .config import Config, load_config
    from .db import open_db
    from .errors import ConfigError, MailflowError, MailServerError
    from .ingest import ingest
    from .parse import ParsedMessage, parse_message


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mailflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
