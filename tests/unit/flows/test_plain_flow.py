"""flows/plain_flow.py: plain JSON parameters pass as they are; a flow run's end does not wait for
Prefect's heartbeat thread."""

from __future__ import annotations

import functools
import inspect

import prefect.flow_engine
import pytest

from flows.plain_flow import _plain_json


@pytest.mark.parametrize(
    ("value", "plain"),
    [
        ({"table": "staff", "rows": 3, "ratio": 0.5, "whole": True, "since": None}, True),
        ({"tables": ["staff", ["nested"]], "horizon": {"clock_at": "2026-12-07T00:00:00"}}, True),
        ({1: "a key that is not a string"}, False),
        ({"when": object()}, False),
    ],
)
def test_only_plain_json_parameters_skip_prefects_serialiser(value: object, plain: bool) -> None:
    assert _plain_json(value) is plain


def test_the_flow_engine_sends_heartbeats_without_joining_their_thread_at_the_end() -> None:
    # A Prefect upgrade that renames or reshapes the heartbeat context fails here, not silently.
    heartbeats = prefect.flow_engine._send_heartbeats
    assert isinstance(heartbeats, functools.partial)
    assert heartbeats.keywords == {"join_on_exit": False}
    assert "join_on_exit" in inspect.signature(heartbeats.func).parameters
