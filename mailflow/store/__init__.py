"""The SQLite store: opening it (WAL), transactions, and the append-only migrations."""
