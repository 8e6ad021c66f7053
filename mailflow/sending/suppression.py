"""Names the receiving module ``answers`` still imports from here.

The queries of suppressed addresses are in ``store.outgoing``; this module goes once
``answers`` imports from the store.
"""

from __future__ import annotations

from ..store.outgoing import suppress, was_mailed

__all__ = ["suppress", "was_mailed"]
