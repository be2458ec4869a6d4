"""The one typed settings object of totes, read from the environment.

Nothing is read at import time: call :func:`load_settings` at start-up. Database URLs are kept as
``SecretStr`` so that printing the settings, a log line or a Prefect parameter never shows a password;
use :meth:`TotesSettings.describe` for a safe, human-readable summary.
"""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal, cast
from urllib.parse import quote, unquote, urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

_POSTGRES_SCHEMES = {"postgresql", "postgres"}


def _check_postgres_url(value: SecretStr | None, *, variable: str) -> SecretStr | None:
    # A URL, or the JSON of a secret (ECS injects a Secrets Manager secret as it is: an RDS-managed
    # secret holds username, password, host, port and dbname).
    return None if value is None else secret_to_url(value.get_secret_value(), variable=variable)


def _postgres_url(text: str, *, variable: str) -> SecretStr:
    """``text`` as a database URL, or a ValueError naming ``variable`` and what is wrong."""
    raw = text.strip()
    parts = urlsplit(raw)
    if parts.scheme not in _POSTGRES_SCHEMES:
        msg = (
            f"{variable} must be a postgresql:// URI (got scheme {parts.scheme or 'none'!r}); "
            "for example postgresql://user:password@host:5432/dbname"
        )
        raise ValueError(msg)
    if not parts.path.strip("/"):
        msg = f"{variable} must name a database, e.g. postgresql://user@host:5432/dbname"
        raise ValueError(msg)
    return SecretStr(raw)


def _check_sftp_url(value: SecretStr | None) -> SecretStr | None:
    if value is None:
        return None
    raw = value.get_secret_value().strip()
    parts = urlsplit(raw)
    if parts.scheme != "sftp" or not parts.hostname or not parts.username:
        msg = f"TOTES_SFTP_URL must look like sftp://user[:password]@host[:port]/path (got {redact_url(raw)!r})"
        raise ValueError(msg)
    return SecretStr(raw)


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``."""
    # Greedy to the authority's last "@": a password with an unencoded "@" is masked whole.
    return re.sub(r"(://[^:/@?#\s]*:)[^/?#\s]*@", r"\1***@", url)


class TotesSettings(BaseSettings):
    """Configuration of one totes process: field ``name`` is the variable ``TOTES_NAME``.

    The descriptions below are the documentation's settings reference (docs/reference/settings.md is
    generated from them by docs_hooks/): every field needs one. An entry may end with ``Default: …``,
    shown instead of the field's own default (where ``None`` stands for a computed or required value).

    Attributes:
        source_url: ToteSys, the operational PostgreSQL database:
            ``postgresql://user:password@host:port/db`` (unix sockets: ``?host=/path``), or the JSON of an
            RDS-managed secret (as ECS injects one). Default: required for ``run``, ``reconcile``,
            ``backfill``, ``seed`` and ``churn``.
        warehouse_url: the star-schema PostgreSQL warehouse, in the same form. Default: required for
            ``run``, ``reconcile``, ``backfill``, ``rebuild``, ``files``, ``status`` and ``serve``.
        source_primary_url: when ``TOTES_SOURCE_URL`` is a copy of another database (a hot standby, a
            logical-replication subscriber, or ``TOTES_SOURCE_IS_COPY``): a read-only connection to the
            database it copies (the primary, the publisher), where the in-flight horizon is read. A copy
            without it is refused, and so is one that reaches another database.
        replica_wait_seconds: how long a run waits for a standby source to replay (a subscriber to
            apply) up to the primary's position at the horizon before it gives up, reading nothing.
        source_is_copy: the source is a copy kept by a tool PostgreSQL does not show (AWS DMS, a CDC or
            trigger-based copier) of the database ``TOTES_SOURCE_PRIMARY_URL`` names: the horizon is read
            there, and since the copy's apply position cannot be known, the watermark stays
            ``TOTES_FALLBACK_LAG_SECONDS`` behind its clock. Standbys and subscribers are recognised
            without it.
        source_stamps_are_utc: every writer of the source stores UTC in its ``timestamp`` audit columns
            whatever the database's ``TimeZone`` (e.g. ``now() at time zone 'UTC'``): lets a source whose
            default ``TimeZone`` is not UTC run.
        lake_url: the lake: a folder, ``file:///path``, or ``s3://bucket/prefix``. S3-compatible
            endpoints and credentials come from the standard ``AWS_*`` variables.
        parquet_rows_per_file: rows after which the extractor starts a new Parquet file: every later
            stage holds about one such file in memory at a time, so this bounds peak memory whatever
            the table size.
        watermark_safety_seconds: margin behind the in-flight horizon, for writers whose clocks lag the
            database's.
        fallback_lag_seconds: the horizon's lag behind the source's clock when the source role cannot
            see other sessions in ``pg_stat_activity`` (grant it ``pg_read_all_stats`` to avoid this),
            and behind a declared copy's primary.
        delete_check_bucket_keys: width of the key ranges compared (count, sum and hash) between the
            source and the lake to find hard-deleted rows; only ranges that differ are read key by key.
            ``0`` turns delete detection off (it costs each run a scan of every table's key column).
        unchanged_table_recheck_seconds: a table the source server has counted no write to since a run
            read it (``pg_stat_user_tables``: inserts, updates, deletes, a new file) is not read at all
            — no delta, no key scan for deletes — unless its last read is older than this, as a check
            of the counters. ``0`` reads every table every run.
        database_concurrency: slots of each database's Prefect global concurrency limit
            ``totes-db-<host>-<port>-<db>``, created with this many if it does not exist (then tune it
            with ``prefect gcl update``): all totes runs and workers together hold at most this many
            connections to one database. Without ``PREFECT_API_URL`` the slots are advisory locks on
            the database itself.
        fan_out: the cycle's ingest runs source tables' extracts as flow runs of their own on the work
            pool, through ``TOTES_FAN_OUT_DEPLOYMENT`` (an ECS task each in production), rather than in
            the cycle's process; the cycle waits for them and alone records the batch. The cycle's
            ``fan_out`` parameter (``totes run --fan-out``) overrides it per run.
        fan_out_deployment: the deployment of the ``extract-table`` flow that fan-out runs.
        fan_out_min_rows: with fan-out, a table gets a child run of its own only when this run
            will read at least this many of its rows (estimated from the server's counts of its
            writes since its last read, or its size when it is read whole); the others, and every
            table nobody wrote, are read in the cycle's own process, so they do not pay a child's
            start-up. 0: every table gets a child.
        fan_out_timeout_seconds: how long the cycle waits for its extract runs before it fails,
            recording nothing (a worker lost with its runs would otherwise be waited for forever).
        lock_wait_seconds: how long a run waits for another run's cycle lock, or for a database's
            connection slots, before it gives up with a message naming the holder.
        alert_sns_topic_arn: an SNS topic that receives an alert for every failed run and every run
            with new data-quality warnings (subscribe your e-mail to it).
        alert_block: a Prefect notification block, ``block-type-slug/name`` (e.g.
            ``slack-webhook/data-eng``), that receives the same alerts.
        local_prefect_api: without ``PREFECT_API_URL``: ``background`` shares one local Prefect server,
            started in the background by the first command that needs it and found again by the next
            (``totes local-api``); ``temporary`` has every command start Prefect's own temporary server,
            as Prefect does by itself (8–15 s a command).
        local_api_idle_minutes: the local Prefect server stops by itself after this many minutes
            without an API request (the next command starts it again); ``0``: never.
        sftp_url: the file feeds' SFTP server, ``sftp://user[:password]@host[:port]/base/path``.
            Default: required for ``files``.
        sftp_url_secret, sftp_url_block: an AWS Secrets Manager secret id, or the name of a Prefect
            ``Secret`` block, holding the SFTP URL instead, as for the database URLs.
        sftp_known_hosts: a known_hosts file holding the server's host key; the host key is always
            verified. Default: ``~/.ssh/known_hosts``.
        sftp_host_keys: the server's host key(s) as known_hosts lines, instead of a file (for
            containers; public keys, not secrets).
        sftp_key_file: a private key to log in with, instead of or besides the password.
        sftp_timeout_seconds: the SFTP connect and login timeout, in seconds.
        feeds_file: your feeds declaration (TOML), which replaces the built-in one. Default: the
            built-in ``tasks/feeds/feeds.toml``.
        files_url: where raw, staged and quarantined feed files live; on S3 the bucket must have
            versioning on (every change of a file is a new version). Default: ``<TOTES_LAKE_URL>/files``.
        dimension_history: history mode: every version of each dimension row in
            ``dim_<name>_history`` (``valid_from``, ``valid_to``, ``is_current``), built from the lake's
            batches when switched on, so it covers the past too.
        schema_drift_policy: JSON, per source table or ``"*"``: what a new source column does, ``warn``
            (it is reported, alerting once; the run goes on) or ``freeze`` (the run stops before reading
            anything, until the model or the policy changes); e.g. ``{"*": "freeze"}`` or
            ``{"sales_order": "freeze"}``. Default: ``warn`` for every table.
        pii_columns: JSON, ``{"table.column": "exclude"}`` or ``"hash"``: source columns that never reach
            the lake as they are. ``exclude`` reads the column as NULL (only columns the model lets be
            NULL); ``hash`` as the hex HMAC-SHA256 of its value under ``TOTES_PII_HASH_KEY`` (equal values
            stay equal, so joins and counts still work; only free-text columns).
        pii_hash_key: the key of ``hash``, a random secret (``openssl rand -hex 32``). Default: required
            if a column is hashed.
        pii_hash_key_secret, pii_hash_key_block: an AWS Secrets Manager secret id, or the name of a
            Prefect ``Secret`` block, holding the key of ``hash`` instead, as for the database URLs.
        source_url_secret, warehouse_url_secret: AWS Secrets Manager secret ids (name or ARN) whose value
            is the database URL, ``{"url": "postgresql://…"}`` or an RDS-managed secret's JSON; they take
            precedence over everything else.
        source_url_block, warehouse_url_block: names of Prefect ``Secret`` blocks holding the database
            URLs; they take precedence over ``TOTES_SOURCE_URL`` / ``TOTES_WAREHOUSE_URL``.
    """

    model_config = SettingsConfigDict(env_prefix="TOTES_", env_file=".env", extra="ignore", frozen=True)

    source_url: SecretStr | None = None
    warehouse_url: SecretStr | None = None
    source_primary_url: SecretStr | None = None
    replica_wait_seconds: float = Field(default=300.0, ge=0)
    source_is_copy: bool = False
    source_stamps_are_utc: bool = False
    lake_url: str = ".totes/lake"
    parquet_rows_per_file: int = Field(default=100_000, ge=1)
    watermark_safety_seconds: float = Field(default=1.0, ge=0)
    fallback_lag_seconds: float = Field(default=900.0, ge=0)
    database_concurrency: int = Field(default=4, ge=1)
    local_prefect_api: Literal["background", "temporary"] = "background"
    local_api_idle_minutes: float = Field(default=30.0, ge=0)
    fan_out: bool = False
    fan_out_deployment: str = "extract-table/totesys-extract-table"
    fan_out_min_rows: int = Field(default=500_000, ge=0)
    fan_out_timeout_seconds: float = Field(default=3600.0, gt=0)
    delete_check_bucket_keys: int = Field(default=10_000, ge=0)
    unchanged_table_recheck_seconds: float = Field(default=3600.0, ge=0)
    lock_wait_seconds: float = Field(default=1800.0, ge=0)
    source_url_secret: str | None = None
    warehouse_url_secret: str | None = None
    source_url_block: str | None = None
    warehouse_url_block: str | None = None
    alert_sns_topic_arn: str | None = None
    alert_block: str | None = None
    sftp_url: SecretStr | None = None
    sftp_url_secret: str | None = None
    sftp_url_block: str | None = None
    sftp_key_file: Path | None = None
    sftp_known_hosts: Path | None = None
    sftp_host_keys: str | None = None
    sftp_timeout_seconds: float = Field(default=30.0, gt=0)
    feeds_file: Path | None = None
    files_url: str | None = None
    dimension_history: bool = False
    schema_drift_policy: dict[str, Literal["warn", "freeze"]] = Field(default_factory=dict)
    pii_columns: dict[str, Literal["exclude", "hash"]] = Field(default_factory=dict)
    pii_hash_key: SecretStr | None = None
    pii_hash_key_secret: str | None = None
    pii_hash_key_block: str | None = None

    @field_validator("schema_drift_policy")
    @classmethod
    def _policy_names_tables(cls, value: dict[str, str]) -> dict[str, str]:
        from tasks.schema import SOURCE_TABLES

        unknown = sorted(set(value) - {"*", *SOURCE_TABLES})
        if unknown:
            msg = f'TOTES_SCHEMA_DRIFT_POLICY names unknown source table(s) {", ".join(unknown)} (or use "*")'
            raise ValueError(msg)
        return value

    @field_validator("pii_columns")
    @classmethod
    def _pii_columns_can_be_masked(cls, value: dict[str, str]) -> dict[str, str]:
        from tasks.schema import pii_column_problem

        problems = [problem for column, how in value.items() if (problem := pii_column_problem(column, how))]
        if problems:
            raise ValueError("TOTES_PII_COLUMNS: " + "; ".join(problems))
        return value

    def frozen_tables(self) -> frozenset[str]:
        """The source tables whose schema drift stops the run (policy ``freeze``)."""
        from tasks.schema import SOURCE_TABLES

        default = self.schema_drift_policy.get("*", "warn")
        return frozenset(name for name in SOURCE_TABLES if self.schema_drift_policy.get(name, default) == "freeze")

    def require_pii_hash_key(self) -> bytes:
        """The key of the ``hash`` PII policy."""
        if self.pii_hash_key is None or not self.pii_hash_key.get_secret_value():
            msg = (
                "TOTES_PII_COLUMNS hashes a column but no key is set: give TOTES_PII_HASH_KEY (or "
                "TOTES_PII_HASH_KEY_SECRET / TOTES_PII_HASH_KEY_BLOCK)"
            )
            raise ValueError(msg)
        return self.pii_hash_key.get_secret_value().encode()

    @field_validator("sftp_url")
    @classmethod
    def _sftp_is_sftp(cls, value: SecretStr | None) -> SecretStr | None:
        return _check_sftp_url(value)

    @field_validator("source_primary_url")
    @classmethod
    def _primary_is_postgres(cls, value: SecretStr | None) -> SecretStr | None:
        return _check_postgres_url(value, variable="TOTES_SOURCE_PRIMARY_URL")

    @field_validator("source_url")
    @classmethod
    def _source_is_postgres(cls, value: SecretStr | None) -> SecretStr | None:
        return _check_postgres_url(value, variable="TOTES_SOURCE_URL")

    @field_validator("warehouse_url")
    @classmethod
    def _warehouse_is_postgres(cls, value: SecretStr | None) -> SecretStr | None:
        return _check_postgres_url(value, variable="TOTES_WAREHOUSE_URL")

    @field_validator("lake_url")
    @classmethod
    def _lake_is_supported(cls, value: str) -> str:
        scheme = urlsplit(value).scheme
        if scheme not in ("", "file", "s3") and not Path(value).is_absolute():
            msg = f"TOTES_LAKE_URL must be a folder, file:// or s3://bucket/prefix (got {value!r})"
            raise ValueError(msg)
        return value

    def require_source_url(self) -> str:
        return _required(self.source_url, "TOTES_SOURCE_URL")

    def require_warehouse_url(self) -> str:
        return _required(self.warehouse_url, "TOTES_WAREHOUSE_URL")

    def require_sftp_url(self) -> str:
        return _required(self.sftp_url, "TOTES_SFTP_URL")

    def require(self, *variables: str) -> None:
        """Check that every one of ``variables`` (``TOTES_SOURCE_URL`` …) is set.

        Raises:
            SettingsProblem: naming every one that is not, and what it takes.
        """
        missing = [v for v in variables if getattr(self, v.removeprefix("TOTES_").lower()) is None]
        if missing:
            raise SettingsProblem("; ".join(f"{v} is not set: give {_WHAT_IT_TAKES[v]}" for v in missing))

    @property
    def feed_files_url(self) -> str:
        """Where the feeds' raw, staged and quarantined files live."""
        return self.files_url or f"{self.lake_url.rstrip('/')}/files"

    def _urls(self) -> list[str]:
        urls = (self.source_url, self.source_primary_url, self.warehouse_url, self.sftp_url)
        return [url.get_secret_value() for url in urls if url is not None]

    def secrets(self) -> list[str]:
        """Every password in the settings (as written and percent-decoded) and the PII hash key, to
        scrub from messages that leave the process."""
        found = []
        for url in self._urls():
            password = urlsplit(url).password
            if password:
                found += [password, unquote(password)]
        if self.pii_hash_key is not None and self.pii_hash_key.get_secret_value():
            found.append(self.pii_hash_key.get_secret_value())
        return sorted(set(found))

    def names(self) -> set[str]:
        """The user and host names of the settings' URLs: never masked as if they were secrets."""
        found: set[str] = set()
        for url in self._urls():
            parts = urlsplit(url)
            found |= {name for name in (parts.username, parts.hostname) if name}
        return found

    def describe(self) -> dict[str, str]:
        """A summary that is safe to log: URLs with passwords redacted."""
        return {
            "source": redact_url(self.source_url.get_secret_value()) if self.source_url else "unset",
            "warehouse": redact_url(self.warehouse_url.get_secret_value()) if self.warehouse_url else "unset",
            "lake": self.lake_url,
            "sftp": redact_url(self.sftp_url.get_secret_value()) if self.sftp_url else "unset",
        }


class SettingsProblem(ValueError):
    """Settings are missing or malformed; the message names every variable and what it takes."""


# What each variable a command may need takes, for the line that says it is missing.
_WHAT_IT_TAKES = {
    "TOTES_SOURCE_URL": "the postgresql:// URI of the ToteSys source database",
    "TOTES_WAREHOUSE_URL": "the postgresql:// URI of the warehouse database",
    "TOTES_SFTP_URL": "the sftp:// URL of the feeds' SFTP server (sftp://user[:password]@host[:port]/path)",
}


def _required(value: SecretStr | None, variable: str) -> str:
    if value is None:
        raise SettingsProblem(f"{variable} is not set: give {_WHAT_IT_TAKES[variable]}")
    return value.get_secret_value()


def secret_to_url(value: str, *, variable: str) -> SecretStr:
    """A database URL from a secret's value: the URL itself, ``{"url": ...}``, or the JSON that
    AWS Secrets Manager keeps for RDS (``username``, ``password``, ``host``, ``port``, ``dbname``)."""
    text = value.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            msg = f"the secret for {variable} is neither a postgresql:// URI nor valid JSON"
            raise ValueError(msg) from error
        if "url" in data:
            text = data["url"]
        else:
            missing = {"username", "password", "host", "dbname"} - data.keys()
            if missing:
                msg = f"the secret for {variable} lacks {sorted(missing)} (expected RDS-style JSON or a URL)"
                raise ValueError(msg)
            text = (
                f"postgresql://{quote(data['username'], safe='')}:{quote(data['password'], safe='')}"
                f"@{data['host']}:{data.get('port', 5432)}/{data['dbname']}"
            )
    return _postgres_url(text, variable=variable)


@lru_cache(maxsize=16)
def _read_aws_secret(secret_id: str) -> str:
    from prefect_aws import AwsCredentials
    from prefect_aws.secrets_manager import AwsSecret

    # Default credential chain and the standard AWS_* variables (region, endpoint).
    value = AwsSecret(aws_credentials=AwsCredentials(), secret_name=secret_id).read_secret()
    return value.decode() if isinstance(value, bytes) else str(value)


@lru_cache(maxsize=16)
def _read_prefect_secret(block_name: str) -> str:
    from prefect.blocks.system import Secret

    secret = cast(Secret, Secret.load(block_name))  # sync_compatible: a Secret when called from sync code
    return str(secret.get())


def _resolve_url(settings: TotesSettings, which: str) -> SecretStr | None:
    variable = f"TOTES_{which.upper()}_URL"
    secret_id = getattr(settings, f"{which}_url_secret")
    block = getattr(settings, f"{which}_url_block")

    def to_url(value: str) -> SecretStr | None:
        if which == "sftp":
            return _check_sftp_url(SecretStr(value))
        return secret_to_url(value, variable=variable)

    try:
        if secret_id:
            return to_url(_read_aws_secret(secret_id))
        if block:
            return to_url(_read_prefect_secret(block))
    except ValueError:
        raise
    except Exception as error:
        source = f"AWS Secrets Manager secret {secret_id!r}" if secret_id else f"Prefect Secret block {block!r}"
        msg = f"cannot read {variable} from {source}: {type(error).__name__}: {error}"
        raise RuntimeError(msg) from error
    return getattr(settings, f"{which}_url")


def _resolve_hash_key(settings: TotesSettings) -> SecretStr:
    secret_id, block = settings.pii_hash_key_secret, settings.pii_hash_key_block
    try:
        return SecretStr(_read_aws_secret(secret_id) if secret_id else _read_prefect_secret(str(block)))
    except Exception as error:
        source = f"AWS Secrets Manager secret {secret_id!r}" if secret_id else f"Prefect Secret block {block!r}"
        msg = f"cannot read TOTES_PII_HASH_KEY from {source}: {type(error).__name__}: {error}"
        raise RuntimeError(msg) from error


def load_settings() -> TotesSettings:
    """Read and validate the settings from the environment (and a ``.env`` file if present).

    Database URLs are resolved in this order: AWS Secrets Manager (``TOTES_*_URL_SECRET``), a Prefect
    Secret block (``TOTES_*_URL_BLOCK``), then the plain variable (``TOTES_*_URL``). Secret values are
    read once per process.
    """
    settings = _read_settings()
    if settings.pii_hash_key_secret or settings.pii_hash_key_block:
        settings = settings.model_copy(update={"pii_hash_key": _resolve_hash_key(settings)})
    if not any(
        (
            settings.source_url_secret,
            settings.warehouse_url_secret,
            settings.sftp_url_secret,
            settings.source_url_block,
            settings.warehouse_url_block,
            settings.sftp_url_block,
        )
    ):
        return settings
    return settings.model_copy(
        update={which + "_url": _resolve_url(settings, which) for which in ("source", "warehouse", "sftp")}
    )


# A URL in a message (scheme://...), up to a space or a quote; and a libpq keyword password.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_KEYWORD_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s'\"]+)", re.IGNORECASE)
# What may stand on either side of a secret for it to be that secret and not part of a longer word.
_WORD = r"A-Za-z0-9._\-"


def scrub(text: str, settings: TotesSettings | None) -> str:
    """``text`` with secrets masked by structure, never by blind text replacement (a password
    ``postgres`` must not turn ``postgresql://`` into ``***ql://``): the password of every URL in
    it and of every ``password=`` keyword becomes ``***``; elsewhere a known secret (a URL's
    password, the PII hash key) is masked only as a whole word, and a password that is also a
    user or host name of the settings is left to the URLs' own masking."""
    names = settings.names() if settings is not None else set()
    secrets = [s for s in settings.secrets() if s not in names] if settings is not None else []
    pieces, last = [], 0
    for url in _URL_IN_TEXT.finditer(text):
        pieces += [_scrub_words(text[last : url.start()], secrets), redact_url(url.group(0))]
        last = url.end()
    pieces.append(_scrub_words(text[last:], secrets))
    return "".join(pieces)


def _scrub_words(text: str, secrets: list[str]) -> str:
    text = _KEYWORD_PASSWORD.sub(lambda m: f"{m.group(1)}***", text)
    for secret in sorted(secrets, key=len, reverse=True):
        text = re.sub(rf"(?<![{_WORD}]){re.escape(secret)}(?![{_WORD}])", "***", text)
    return text


# Settings given as JSON, and an example of each.
_JSON_SETTINGS = {
    "schema_drift_policy": '{"*": "freeze"} or {"sales_order": "warn"}',
    "pii_columns": '{"staff.email_address": "hash"}',
}
# Settings whose given value may hold a secret: never repeated in a message.
_SECRET_SETTINGS = ("url", "key", "secret", "block")


def _read_settings() -> TotesSettings:
    """The settings from the environment (and ``.env``), or every problem with them at once.

    Raises:
        SettingsProblem: one line naming each variable that is malformed or out of range, what it
            got (unless it may hold a secret) and what it takes.
    """
    problems: dict[str, str] = {}
    for field, example in _JSON_SETTINGS.items():
        variable = f"TOTES_{field.upper()}"
        text = next((v for k, v in os.environ.items() if k.upper() == variable), None)
        if text is not None:
            try:
                json.loads(text)
            except ValueError as error:
                problems[variable] = f"{variable} is not valid JSON ({error}): give an object, e.g. {example}"
    hidden = {k: os.environ.pop(k) for k in list(os.environ) if k.upper() in problems}
    try:
        return TotesSettings()
    except ValidationError as error:
        for e in error.errors():
            field = str(e["loc"][0]) if e["loc"] else "settings"
            variable = f"TOTES_{field.upper()}"
            message = e["msg"].removeprefix("Value error, ")
            given = "" if any(w in field for w in _SECRET_SETTINGS) else f" (got {e.get('input')!r})"
            problems.setdefault(variable, message if message.startswith(variable) else f"{variable}: {message}{given}")
    except SettingsError as error:
        named = re.search(r'field "(\w+)"', str(error))
        variable = f"TOTES_{named.group(1).upper()}" if named else "a TOTES_ setting"
        problems.setdefault(variable, f"{variable} cannot be read: {error}")
    finally:
        os.environ.update(hidden)
    raise SettingsProblem("; ".join(problems.values()))


def describe_validation_error(error: ValidationError, *, subject: str = "settings") -> str:
    """A pydantic validation error as one line: each field's path and message, e.g.
    ``lake_url: must be a local folder or s3:// URL``."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or subject}: {e['msg'].removeprefix('Value error, ')}"
        for e in error.errors()
    )
