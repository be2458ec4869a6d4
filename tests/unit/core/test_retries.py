"""Fault classification (tasks/core/retries.py): which errors are retried and which fail at once."""

from __future__ import annotations

import pytest

from tasks.core.retries import call_retrying, is_transient


class FakeAdbcError(Exception):
    """Stands in for an ADBC error carrying a SQLSTATE (the driver's exceptions need a live handle)."""

    def __init__(self, message: str, sqlstate: str):
        super().__init__(message)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError("connection refused"),
        ConnectionResetError("connection reset by peer"),
        FakeAdbcError("terminating connection due to administrator command", "57P01"),
        FakeAdbcError("could not connect to server", "08006"),
        FakeAdbcError("could not serialize access", "40001"),
        OSError("IO: [libpq] Failed to begin transaction: no connection to the server"),  # a session ended
        OSError("An error occurred (SlowDown) when calling PutObject: Please reduce your request rate"),
        OSError("An error occurred (503) Service Unavailable"),
    ],
)
def test_transient(error):
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        FakeAdbcError('password authentication failed for user "etl"', "28P01"),
        FakeAdbcError('database "nope" does not exist', "3D000"),
        FakeAdbcError('relation "sales_order" does not exist', "42P01"),
        ValueError("sales_order.agreed_delivery_date: 1 value(s) are not yyyy-mm-dd dates"),
        PermissionError("Access Denied"),
        OSError('connection to server failed: FATAL:  password authentication failed for user "x"'),
    ],
)
def test_permanent(error):
    assert not is_transient(error)


def test_a_call_outside_a_task_waits_out_a_transient_failure(monkeypatch, caplog):
    slept: list[float] = []
    monkeypatch.setattr("tasks.core.retries.time.sleep", slept.append)
    outcomes: list[BaseException | str] = [ConnectionResetError(104, "Connect call failed"), OSError("timed out"), "ok"]

    def call() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    assert call_retrying(call, purpose="the lake check") == "ok"
    assert slept == [1.0, 2.0]
    assert "the lake check: [Errno 104] Connect call failed; trying again in 1 s (attempt 2 of 5)" in caplog.text


def test_a_call_outside_a_task_fails_at_once_on_a_permanent_failure(monkeypatch):
    monkeypatch.setattr("tasks.core.retries.time.sleep", lambda seconds: pytest.fail("slept"))

    def call() -> None:
        raise PermissionError("Access Denied")

    with pytest.raises(PermissionError):
        call_retrying(call, purpose="the lake check")


def test_a_call_outside_a_task_gives_up_after_its_attempts(monkeypatch):
    monkeypatch.setattr("tasks.core.retries.time.sleep", lambda seconds: None)
    calls: list[int] = []

    def call() -> None:
        calls.append(1)
        raise ConnectionRefusedError(111, "Connection refused")

    with pytest.raises(ConnectionRefusedError):
        call_retrying(call, purpose="the lake check", attempts=3)
    assert len(calls) == 3
