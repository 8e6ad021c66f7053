"""``python -m mailflow``: the same as the ``mailflow`` command."""

from .cli import cli

cli()
