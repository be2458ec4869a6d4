"""Schema drift: the source's columns compared with the model before anything is read. Pure."""

from __future__ import annotations

import pyarrow as pa

from tasks.schema import SOURCE_TABLES


class SchemaDrift(RuntimeError):
    """The source's tables no longer have the columns or types totes reads (names them all)."""


class SourceInLocalTime(RuntimeError):
    """The source's writers would store local wall times in its audit columns, which totes reads as UTC."""


# The audit columns: last_updated bounds every delta read; created_at becomes the facts' created date and time.
AUDIT_COLUMNS = ("created_at", "last_updated")


# The PostgreSQL types (information_schema's data_type) each raw Arrow type can be read from.
SOURCE_TYPES_FOR = (
    (pa.types.is_int32, {"integer", "smallint", "bigint"}),  # a bigint beyond integer: set aside
    (pa.types.is_string, {"text", "character varying", "character", "USER-DEFINED"}),
    (pa.types.is_timestamp, {"timestamp without time zone", "timestamp with time zone"}),
    (pa.types.is_decimal, {"numeric"}),
    (pa.types.is_date32, {"date"}),
    (pa.types.is_boolean, {"boolean"}),
)


def schema_drift(
    found: dict[str, dict[str, str]], *, frozen: frozenset[str] = frozenset()
) -> tuple[list[str], list[str]]:
    """(errors, warnings) from the source's columns (table -> column -> data_type) against the model.

    Errors: a table or a column totes reads is gone (dropped or renamed), or its type changed to one
    the model cannot take, or a ``frozen`` table (schema-drift policy ``freeze``) has a new column.
    Warnings: new columns of the other tables, which totes does not carry (the run goes on). Pure.
    """
    errors: list[str] = []
    warnings: list[str] = []
    for name, table in SOURCE_TABLES.items():
        columns = found.get(name)
        if columns is None:
            errors.append(f"source table {name} does not exist")
            continue
        missing = [c for c in table.columns if c not in columns]
        new = [c for c in columns if c not in table.columns]
        if missing:
            hint = f"; new column(s) there: {', '.join(new)} (renamed?)" if new else " (dropped or renamed?)"
            errors.append(f"source table {name} lacks column(s) {', '.join(missing)}{hint}")
        elif new and name in frozen:
            errors.append(
                f"source table {name} has new column(s) {', '.join(new)} and its schema-drift policy is freeze "
                "(TOTES_SCHEMA_DRIFT_POLICY): carry them in the model, or set the policy to warn"
            )
        elif new:
            warnings.append(
                f"schema drift: source table {name} has new column(s) {', '.join(new)}, not carried into the warehouse"
            )
        for expected in table.schema:
            actual = columns.get(expected.name)
            allowed = next((types for test, types in SOURCE_TYPES_FOR if test(expected.type)), set())
            if actual is not None and actual not in allowed:
                errors.append(
                    f"source column {name}.{expected.name} is {actual}, expected one of {', '.join(sorted(allowed))}"
                )
    return errors, warnings


def local_time_stamps(
    found: dict[str, dict[str, str]], *, time_zone: str, is_utc: bool, database: str, where: str = "source database"
) -> str | None:
    """Why the stamps of a source would be misread (a refusal naming the fix), or None.

    A ``timestamp without time zone`` audit column keeps a wall time and no zone: a writer whose
    session TimeZone is not UTC stores its local time there with ``now()``, which totes compares
    with its UTC watermark as if it were UTC: west of UTC every change falls behind the watermark,
    and in any other zone every time reaches the warehouse off by the zone's offset.
    ``timestamp with time zone`` columns keep the instant,
    whatever the TimeZone. ``found`` is table -> column -> data_type; ``time_zone``/``is_utc`` the
    default TimeZone of ``database`` (``where``: which connection). Pure.
    """
    if is_utc:
        return None
    naive = [
        f"{name}.{column}"
        for name, table in SOURCE_TABLES.items()
        for column in AUDIT_COLUMNS
        if column in table.columns and found.get(name, {}).get(column) == "timestamp without time zone"
    ]
    if not naive:
        return None
    shown = ", ".join(naive[:3]) + (f" and {len(naive) - 3} more" if len(naive) > 3 else "")
    return (
        f"the {where}'s default TimeZone is {time_zone} and its audit columns ({shown}) are timestamp without "
        f"time zone: a writer's now() stores {time_zone} wall time there, which totes would read as UTC (changes "
        "missed behind the watermark west of UTC, every time off by the offset). Set the database's TimeZone to UTC "
        f'(ALTER DATABASE "{database}" SET '
        "timezone TO 'UTC') or make the columns timestamptz; if every writer stores UTC whatever the TimeZone, "
        "set TOTES_SOURCE_STAMPS_ARE_UTC=true; nothing was read"
    )
