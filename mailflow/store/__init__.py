"""The SQLite store: opening it (WAL), transactions, the append-only migrations, the words
kept for states (``states``), and every query, by table family: ``mailbox``, ``people``,
``inbound``, ``outgoing``, ``schedule``, ``events``, ``desk``."""
