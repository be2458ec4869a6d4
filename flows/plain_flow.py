"""``plain_flow``: Prefect's ``@flow`` for flows whose parameters are plain JSON, without the second
every run of such a flow would pay to import FastAPI.

Prefect serialises a flow run's parameters with FastAPI's ``jsonable_encoder``, imported when the
first run starts: 0.8-1.1 s measured here, on a run whose own work can take less. Parameters that
are already JSON (booleans, numbers, strings, lists and dicts of them, as every totes flow takes)
are sent as they are; anything else still goes through Prefect's own serialiser.

Importing this module also stops Prefect's flow engine from waiting up to a second for its heartbeat
thread at the end of every flow run (:func:`_heartbeats_without_waiting`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from prefect import Flow

P = ParamSpec("P")
R = TypeVar("R")


def _plain_json(value: object) -> bool:
    if value is None or isinstance(value, bool | int | float | str):
        return True
    if isinstance(value, list | tuple):
        return all(_plain_json(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(key, str) and _plain_json(item) for key, item in value.items())
    return False


class _PlainParametersFlow(Flow[P, R]):
    def serialize_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        if _plain_json(parameters):
            return dict(parameters)
        return super().serialize_parameters(parameters)


def plain_flow(**options: Any) -> Callable[[Callable[P, R]], Flow[P, R]]:
    """``@flow(**options)`` for a flow whose parameters are plain JSON values."""

    def decorate(fn: Callable[P, R]) -> Flow[P, R]:
        return _PlainParametersFlow(fn=fn, **options)

    return decorate


def _heartbeats_without_waiting() -> None:
    """Prefect's sync flow engine joins its heartbeat thread when a flow run ends, and that thread
    sleeps a second at a time: every run waited 0-1 s (0.6 s median, measured on no-op runs) after
    its work. The heartbeats still go out every ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` seconds; the
    thread stops by itself at its next check, as Prefect's async engine lets it."""
    import functools

    import prefect.flow_engine as engine

    original = getattr(engine, "_send_heartbeats", None)
    if original is not None and not isinstance(original, functools.partial):
        engine._send_heartbeats = functools.partial(original, join_on_exit=False)


_heartbeats_without_waiting()
