"""Fault classification (tasks/core/retries.py): which errors are retried and which fail at once."""

from __future__ import annotations

import pytest

from tasks.core.retries import is_transient


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
