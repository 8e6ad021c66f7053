"""mailflow: an email-first workflow engine.

The library is the product; the ``mailflow`` command is a thin layer over it. Start with
``load_config``, ``open_db``, ``ingest`` and ``parse_message``.
"""

from .config import Config, load_config
from .db import open_db
from .errors import ConfigError, MailflowError, MailServerError
from .ingest import ingest
from .parse import ParsedMessage, parse_message

__version__ = "0.1.0"

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
