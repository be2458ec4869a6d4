"""``python -m flows.cli``: the ``totes`` command (what ``python flows/etl.py`` hands over to)."""

from flows.cli.main import entry

entry()
