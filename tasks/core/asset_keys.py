"""Names of what totes reads and writes, as Prefect asset keys (URIs): the source tables, the lake's
raw and star tables, the warehouse tables, the feeds' SFTP directories and raw files. Pure.

A key names a place, never a credential: database URLs keep their host, port and database only. The
same place gives the same key in every run and from every process, so that Prefect joins the
materializations of one table into one asset, and the lineage (source -> raw -> star -> warehouse)
into one graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tasks.settings import TotesSettings

# Prefect refuses these in asset keys (prefect.types.names.RESTRICTED_ASSET_CHARACTERS); a local
# lake folder may hold one: each becomes "_" (a space, which a file URL writes %20, becomes "_20").
_RESTRICTED = "\n\r\t\0 #?&%\"'<>[]{}|\\^`"

# Which source tables each star table is built from (its lineage; docs/reference/data-model.md).
STAR_SOURCES: dict[str, tuple[str, ...]] = {
    "fact_sales_order": ("sales_order",),
    "fact_purchase_order": ("purchase_order",),
    "fact_payment": ("payment",),
    "dim_date": ("sales_order", "purchase_order", "payment"),
    "dim_staff": ("staff", "department"),
    "dim_location": ("address",),
    "dim_design": ("design",),
    "dim_currency": ("currency",),
    "dim_counterparty": ("counterparty", "address"),
    "dim_payment_type": ("payment_type",),
    "dim_transaction": ("transaction",),
}


def _clean(key: str) -> str:
    return "".join("_" if char in _RESTRICTED else char for char in key).rstrip("/")


def database_key(url: str) -> str:
    """``postgresql://host:port/database`` of a database URL: no user, password or options."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"  # a Unix socket: the host is in the options
    port = f":{parts.port}" if parts.port else ""
    return _clean(f"postgresql://{host}{port}/{parts.path.strip('/')}")


def folder_key(url: str) -> str:
    """An ``s3://``/``file://`` URL, or a local folder as ``file:///absolute/path``."""
    scheme = urlsplit(url).scheme
    if scheme in ("s3", "file"):
        return _clean(url)
    return _clean(Path(url).expanduser().resolve().as_uri())


@dataclass(frozen=True)
class AssetKeys:
    """The asset keys of one deployment of totes (its source, lake, warehouse and feed stores)."""

    source: str | None  # None: a flow that does not read the source (load, rebuild, files)
    lake: str
    warehouse: str
    files: str
    sftp: str | None = None

    @classmethod
    def of(
        cls,
        *,
        source_url: str | None,
        lake_url: str,
        warehouse_url: str,
        files_url: str,
        sftp_url: str | None = None,
    ) -> AssetKeys:
        sftp = None
        if sftp_url:
            parts = urlsplit(sftp_url)
            port = f":{parts.port}" if parts.port else ""
            sftp = _clean(f"sftp://{parts.hostname}{port}/{parts.path.strip('/')}")
        return cls(
            source=database_key(source_url) if source_url else None,
            lake=folder_key(lake_url),
            warehouse=database_key(warehouse_url),
            files=folder_key(files_url),
            sftp=sftp,
        )

    @classmethod
    def from_settings(cls, settings: TotesSettings, *, with_source: bool = False) -> AssetKeys:
        """The keys of the configured places (``with_source``: the source's too, where it is read)."""
        return cls.of(
            source_url=settings.require_source_url() if with_source else None,
            lake_url=settings.lake_url,
            warehouse_url=settings.require_warehouse_url(),
            files_url=settings.feed_files_url,
            sftp_url=settings.sftp_url.get_secret_value() if settings.sftp_url else None,
        )

    def source_table(self, table: str) -> str:
        if self.source is None:
            msg = "no source URL: the source's asset keys are known where the source is read"
            raise ValueError(msg)
        return f"{self.source}/{table}"

    def raw(self, table: str) -> str:
        return f"{self.lake}/raw/{table}"

    def star(self, table: str) -> str:
        return f"{self.lake}/star/{table}"

    def warehouse_table(self, table: str) -> str:
        return f"{self.warehouse}/{table}"

    def feed_directory(self, directory: str) -> str:
        """A feed's SFTP directory (relative to the SFTP URL's path)."""
        root = self.sftp or "sftp://unknown"
        return _clean(f"{root}/{directory.strip('/')}")

    def feed_files(self, feed: str) -> str:
        """A feed's versioned raw files."""
        return f"{self.files}/raw/{feed}"
