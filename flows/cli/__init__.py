"""The ``totes`` command line (``main.py``) and what only it uses: ``totes status`` and ``totes
doctor``, the demo, the readable run logs, and the local Prefect server it starts for a user
without ``PREFECT_API_URL``. Kept empty so that ``python -m flows.cli.local_api`` (the server's own
process) imports none of the rest."""
