"""Prefect flows of totes: they only wire the tasks of the ``tasks`` package together."""
