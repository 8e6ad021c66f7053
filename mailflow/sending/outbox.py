"""Names the receiving modules (``answers``, ``alias``) still import from here.

The outbox's queries and its ``Outgoing`` mail are in ``store.outgoing``; this module goes
once those two import from the store.
"""

from __future__ import annotations

from ..store.db import iso
from ..store.outgoing import Outgoing, queue

__all__ = ["Outgoing", "iso", "queue"]
