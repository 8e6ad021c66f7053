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
    "open_db": "store.db",
    "ConfigError": "errors",
    "MailServerError": "errors",
    "MailflowError": "errors",
    "Engine": "running.engine",
    "ingest": "receiving.ingest",
    "ParsedMessage": "receiving.parse",
    "parse_message": "receiving.parse",
}

__all__ = [
    "Config",
    "ConfigError",
    "Engine",
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
    from .errors import ConfigError, MailflowError, MailServerError
    from .receiving.ingest import ingest
    from .receiving.parse import ParsedMessage, parse_message
    from .running.engine import Engine
    from .store.db import open_db


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mailflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
