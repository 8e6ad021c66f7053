"""The web archive: ``mailflow serve``, Datasette over a derived, read-only archive database.

``site`` makes the Datasette instance (metadata in the staff's language, the logins);
``guard`` keeps everything behind the login; ``serve`` builds the archive, keeps it up to
date beside the daemon and runs the web server. The archive database itself is built by
``mailflow.store.archive``.
"""
