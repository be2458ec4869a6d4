"""A lake and a warehouse that know each other: the lake has an identity from its first batch
(``_totes_lake.json``), the warehouse records the identity of the lake it is loaded from
(``_totes_lake``), and the commands that write refuse another lake, an empty one or a missing one.

Without it, a wrong ``TOTES_LAKE_URL`` (a typo, an empty folder, the default ``.totes/lake`` of
whatever directory one stands in) made ``totes rebuild`` empty every star table, and ``totes run``
start a second lake whose batch ids sort below the real ones, so the current views showed older
versions.

A warehouse loaded before lakes had an identity is bound to the lake at ``TOTES_LAKE_URL`` on the
next run if that lake holds the last batch the warehouse loaded (the lake is given an identity then,
if it has none); otherwise the run is refused, naming both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from tasks.core.lake import LAKE_IDENTITY, RAW, STAR, Lake
from tasks.core.manifests import LakeIdentity
from tasks.core.postgres import Connection, fetch_rows
from tasks.core.retries import call_retrying, connect_retrying
from tasks.core.sql import SqlFolder
from tasks.settings import redact_url

CORE_SQL = SqlFolder("tasks.core")


class WrongLake(RuntimeError):
    """The lake at TOTES_LAKE_URL is not the one the warehouse is loaded from (or holds nothing)."""

    transient = False  # a setting to correct: retrying cannot help


@dataclass(frozen=True)
class WarehouseLake:
    """What the warehouse says about its lake: the lake it is bound to (None: none yet) and the
    batches it has loaded."""

    lake_id: str | None
    lake_url: str | None
    batches_loaded: int
    last_batch: str | None


def read_warehouse_lake(connection: Connection) -> WarehouseLake:
    """The warehouse's binding and loaded batches (nothing for a warehouse with no schema yet)."""
    ((has_binding, has_loaded),) = fetch_rows(connection, CORE_SQL.read("select_bookkeeping_tables"))
    bound = fetch_rows(connection, CORE_SQL.read("select_lake_binding")) if has_binding else []
    loaded = fetch_rows(connection, CORE_SQL.read("select_loaded_batch_range")) if has_loaded else [(0, None)]
    ((batches, last),) = loaded
    lake_id, lake_url = bound[0] if bound else (None, None)
    return WarehouseLake(lake_id=lake_id, lake_url=lake_url, batches_loaded=int(batches), last_batch=last)


def bind(connection: Connection, identity: LakeIdentity, lake: Lake) -> None:
    """Record ``lake`` as the warehouse's lake (its table exists once the schema is migrated)."""
    with connection.cursor() as cursor:
        cursor.execute(CORE_SQL.read("bind_lake"), parameters=(identity.lake_id, redact_url(lake.url)))
    connection.commit()


def check_lake(
    connection: Connection, lake: Lake, *, warehouse: str, rebuild: bool = False, adopt: bool = False
) -> LakeIdentity | None:
    """Check that the lake at ``lake`` is the warehouse's own before a command writes anything;
    return its identity (None: no lake there yet and a warehouse that has loaded nothing: the first
    ingest starts one). Binds the warehouse to the lake when it is bound to none yet and either
    holds nothing or was loaded from this lake before lakes had identities.

    ``rebuild``: the warehouse is to be replaced from the lake, which must then hold batches (the
    caller binds the lake when the rebuild has committed). ``adopt``: a rebuild may replace a
    warehouse loaded from another lake.

    Raises:
        WrongLake: one line naming the lake found, the warehouse's lake, and what to do.
    """
    state = read_warehouse_lake(connection)
    identity = lake.read_identity()
    if not rebuild and identity is not None and identity.lake_id == state.lake_id:
        if state.lake_url != redact_url(lake.url):
            bind(connection, identity, lake)  # the same lake, moved: keep where it is now
        return identity  # the usual case, every run: no listing of a lake's batches
    star_batches = lake.list_batches(STAR)
    has_batches = bool(star_batches or lake.list_batches(RAW))
    if rebuild and not has_batches:  # raw batches are transformed first, so they count
        msg = (
            f"TOTES_LAKE_URL {lake.url} {_what_is_there(lake, identity, has_batches)}: a rebuild from it would "
            f"empty the warehouse {warehouse}; point TOTES_LAKE_URL at the warehouse's lake; nothing was changed"
        )
        raise WrongLake(msg)
    holds_last = state.last_batch is not None and state.last_batch in set(star_batches)
    if state.lake_id is not None:
        if identity is not None and identity.lake_id == state.lake_id:
            if state.lake_url != redact_url(lake.url):
                bind(connection, identity, lake)  # the same lake, moved: keep where it is now
            return identity
        if identity is None and holds_last:
            return _restore_identity(lake, state.lake_id)  # its own lake, its identity file lost
        theirs = f"the warehouse {warehouse} is loaded from lake {state.lake_id} at {state.lake_url}"
    elif not state.batches_loaded or holds_last:
        # A new warehouse, or one loaded from this lake before lakes had identities.
        if identity is None and not has_batches:
            return None
        identity = identity or lake.ensure_identity()
        if not rebuild and _has_binding_table(connection):
            bind(connection, identity, lake)
        return identity
    else:
        theirs = (
            f"the warehouse {warehouse} has loaded {state.batches_loaded} batch(es), the last {state.last_batch}, "
            "which this lake lacks"
        )
    if rebuild and adopt:
        return identity or lake.ensure_identity()
    fix = "point TOTES_LAKE_URL at the warehouse's lake"
    if has_batches:
        fix += ", or rebuild the warehouse from this one with `totes rebuild --adopt-lake`"
    msg = f"TOTES_LAKE_URL {lake.url} {_what_is_there(lake, identity, has_batches)}, but {theirs}: {fix}; nothing was changed"
    raise WrongLake(msg)


def _what_is_there(lake: Lake, identity: LakeIdentity | None, has_batches: bool) -> str:
    if identity is not None:
        return f"is lake {identity.lake_id} (created {identity.created_at:%Y-%m-%d %H:%M} UTC)"
    if has_batches:
        return "is a lake without an identity"
    return "holds no lake" if lake.exists else "does not exist"


def _has_binding_table(connection: Connection) -> bool:
    ((has_binding, _),) = fetch_rows(connection, CORE_SQL.read("select_bookkeeping_tables"))
    return bool(has_binding)


def _restore_identity(lake: Lake, lake_id: str) -> LakeIdentity:
    """Give the warehouse's own lake back the identity the warehouse recorded."""
    restored = LakeIdentity(lake_id=lake_id)
    try:
        lake.put_whole(LAKE_IDENTITY, json.dumps(restored.to_json(), indent=1).encode(), create_only=True)
    except FileExistsError:
        return lake.read_identity() or restored
    return restored


def check_warehouse_lake(
    warehouse_url: str, lake_url: str, *, rebuild: bool = False, adopt: bool = False
) -> LakeIdentity | None:
    """:func:`check_lake` on a connection of its own (see there)."""
    lake = Lake.from_url(lake_url)

    def check() -> LakeIdentity | None:
        lake.require_bucket()
        with connect_retrying(warehouse_url, purpose="warehouse database") as connection:
            return check_lake(connection, lake, warehouse=redact_url(warehouse_url), rebuild=rebuild, adopt=adopt)

    # Outside any task: an S3 endpoint briefly away at a run's start is waited for as a task would.
    return call_retrying(check, purpose=f"the lake check of {lake_url}")


def bind_warehouse_lake(warehouse_url: str, lake_url: str) -> None:
    """Bind the warehouse to the lake at ``lake_url`` (after a rebuild from it committed)."""
    lake = Lake.from_url(lake_url)
    with connect_retrying(warehouse_url, purpose="warehouse database") as connection:
        bind(connection, lake.ensure_identity(), lake)
