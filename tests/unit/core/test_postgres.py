"""A database server out of a resource (SQLSTATE class 53; tasks/core/postgres.py): not retried, but
for too many connections; one line that says what to change."""

from __future__ import annotations

import pyarrow as pa
import pytest
from adbc_driver_manager import AdbcStatusCode
from adbc_driver_manager.dbapi import OperationalError

from tasks.core.postgres import (
    COPY_BATCH_BYTES,
    ResourceExhausted,
    database_error_reason,
    explaining_resource_errors,
    in_copy_sized_batches,
    resource_shortage,
)
from tasks.core.retries import is_transient


def driver_error(message: str, sqlstate: str | None = None) -> OperationalError:
    """An error as the ADBC driver raises it (with the SQLSTATE, or without it, as a failed bulk
    ingest or connection has it)."""
    return OperationalError(message, status_code=AdbcStatusCode.IO, sqlstate=sqlstate)


OUT_OF_LOCKS = driver_error(
    "IO: [libpq] Failed to execute query 'create temporary table x (y int)': ERROR:  out of shared memory\n"
    "HINT:  You might need to increase max_locks_per_transaction.\n. SQLSTATE: 53200",
    "53200",
)
# The bulk ingest's error: the same server error, without its SQLSTATE.
INGEST_OUT_OF_LOCKS = driver_error(
    "IO: [libpq] Failed to create table: ERROR:  out of shared memory\n"
    "HINT:  You might need to increase max_locks_per_transaction.\n\n"
    'Query was: CREATE TEMPORARY TABLE pg_temp . "_totes_referenced" ("id" int4)'
)
# A SELECT (run as a COPY) that could not take its lock.
COPY_OUT_OF_LOCKS = driver_error(
    "IO: [libpq] Execution error [PGRES_FATAL_ERROR]: ERROR:  out of shared memory\n"
    "HINT:  You might need to increase max_locks_per_transaction.\n",
    "53200",
)
TOO_MANY_CLIENTS = driver_error(
    'IO: [libpq] Failed to connect: connection to server at "127.0.0.1", port 5432 failed: FATAL:  sorry, too '
    "many clients already"
)


@pytest.mark.parametrize(
    ("error", "fix"),
    [
        (OUT_OF_LOCKS, "raise max_locks_per_transaction"),
        (INGEST_OUT_OF_LOCKS, "raise max_locks_per_transaction"),
        (driver_error("ERROR:  out of memory\nDETAIL:  Failed on request of size 8192.", "53200"), "work_mem"),
        (driver_error("ERROR:  could not extend file: No space left on device", "53100"), "disk space"),
        (driver_error("ERROR:  could not extend file: No space left on device"), "disk space"),
        (driver_error("ERROR:  too many open files in the system", "53400"), "raise the server setting"),
        (driver_error("ERROR:  some resource ran out", "53000"), "the server's log"),
        (driver_error("ERROR:  something new", "53999"), "the server's log"),
    ],
)
def test_a_server_out_of_a_resource_fails_at_once_naming_what_to_change(error, fix):
    assert not is_transient(error)
    assert fix in database_error_reason(error)
    with pytest.raises(ResourceExhausted) as raised, explaining_resource_errors("warehouse database"):
        raise error
    message = str(raised.value)
    assert message.startswith("the warehouse database ran out of a resource: ")
    assert fix in message
    assert "\n" not in message
    assert "Query was" not in message
    assert not is_transient(raised.value)


@pytest.mark.parametrize("error", [OUT_OF_LOCKS, COPY_OUT_OF_LOCKS])
def test_the_lock_table_full_is_one_line_with_its_sqlstate_and_the_setting_to_raise(error):
    assert database_error_reason(error) == (
        "out of shared memory (SQLSTATE 53200); the server's lock table is full: raise max_locks_per_transaction "
        "(or max_connections) in its configuration and restart it; it holds max_locks_per_transaction x "
        "(max_connections + max_prepared_transactions) locks for every session together"
    )


@pytest.mark.parametrize(
    "error",
    [
        TOO_MANY_CLIENTS,
        driver_error("FATAL:  sorry, too many clients already", "53300"),
        driver_error("FATAL:  remaining connection slots are reserved for roles with the SUPERUSER attribute", "53300"),
    ],
)
def test_too_many_connections_is_retried_and_names_what_to_change_if_it_lasts(error):
    """Other clients' connections come and go, and totes's own are bounded by its slots."""
    assert is_transient(error)
    assert "raise the server's max_connections, or lower TOTES_DATABASE_CONCURRENCY" in database_error_reason(error)
    with pytest.raises(ResourceExhausted) as raised, explaining_resource_errors("warehouse database"):
        raise error
    assert is_transient(raised.value)


@pytest.mark.parametrize(
    "error",
    [
        driver_error('ERROR:  relation "x" does not exist', "42P01"),
        driver_error("ERROR:  canceling statement due to lock timeout", "55P03"),
        driver_error("FATAL:  terminating connection due to administrator command", "57P01"),
        RuntimeError("out of memory"),  # not the database's words: not a database resource
    ],
)
def test_other_errors_are_not_resource_shortages(error):
    assert resource_shortage(error) is None
    with pytest.raises(type(error)), explaining_resource_errors("warehouse database"):
        raise error


@pytest.mark.parametrize("rows", [0, 1, 5_000, 100_000])
def test_copy_batches_keep_every_row_in_order_in_slices_that_fit_the_socket(rows):
    batch = pa.record_batch({"id": pa.array(range(rows), pa.int32()), "name": pa.array(["a tote bag"] * rows)})
    sized = list(in_copy_sized_batches([batch, batch.slice(0, 0), batch]))
    assert pa.Table.from_batches(sized, batch.schema).equals(pa.Table.from_batches([batch, batch], batch.schema))
    assert all(0 < part.num_rows and part.nbytes <= COPY_BATCH_BYTES for part in sized)
