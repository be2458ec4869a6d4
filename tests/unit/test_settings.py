"""The settings (tasks/settings.py): the variables they read and the values they refuse, URLs from
secrets, the PII and schema-drift policies they accept, and the masking of secrets in messages."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from tasks.schema import SOURCE_TABLES
from tasks.settings import TotesSettings, redact_url, scrub, secret_to_url


class TestSettings:
    def test_reads_the_three_variables(self, monkeypatch):
        monkeypatch.setenv("TOTES_SOURCE_URL", "postgresql://etl:s3cret@db:5432/totesys")
        monkeypatch.setenv("TOTES_WAREHOUSE_URL", "postgresql://loader:hunter2@dw/warehouse")
        monkeypatch.setenv("TOTES_LAKE_URL", "s3://lake-bucket/prefix")
        settings = TotesSettings()
        assert settings.require_source_url().endswith("/totesys")
        assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.describe())
        assert settings.describe()["source"] == "postgresql://etl:***@db:5432/totesys"
        assert sorted(settings.secrets()) == ["hunter2", "s3cret"]

    @pytest.mark.parametrize(
        ("variable", "value", "message"),
        [
            ("TOTES_SOURCE_URL", "mysql://x@y/db", "postgresql:// URI"),
            ("TOTES_WAREHOUSE_URL", "postgresql://x@y", "name a database"),
            ("TOTES_LAKE_URL", "gs://bucket", "TOTES_LAKE_URL"),
        ],
        ids=["source not postgresql", "warehouse without a database", "lake on another cloud"],
    )
    def test_rejects_bad_values_loudly(self, monkeypatch, variable, value, message):
        monkeypatch.setenv(variable, value)
        with pytest.raises(ValidationError, match=message):
            TotesSettings()

    def test_missing_url_says_which_variable(self, monkeypatch):
        monkeypatch.delenv("TOTES_SOURCE_URL", raising=False)
        with pytest.raises(ValueError, match="TOTES_SOURCE_URL is not set"):
            TotesSettings(_env_file=None).require_source_url()


def test_rds_style_secret_becomes_a_url():
    url = secret_to_url(
        json.dumps(
            {"username": "etl", "password": "p@ss:word/1", "host": "db.example.com", "port": 5433, "dbname": "totesys"}
        ),
        variable="TOTES_SOURCE_URL",
    )
    assert url.get_secret_value() == "postgresql://etl:p%40ss%3Aword%2F1@db.example.com:5433/totesys"
    with pytest.raises(ValueError, match="lacks"):
        secret_to_url('{"username": "etl"}', variable="TOTES_SOURCE_URL")


class TestPolicySettings:
    def test_pii_columns_the_model_cannot_take_are_refused_with_the_reason(self, monkeypatch):
        monkeypatch.setenv(
            "TOTES_PII_COLUMNS",
            '{"staff.email_address": "exclude", "sales_order.agreed_payment_date": "hash", "staff.nope": "hash"}',
        )
        with pytest.raises(ValidationError) as refused:
            TotesSettings()
        message = str(refused.value)
        assert (
            "staff.email_address cannot be excluded: the model needs a value there (NOT NULL); hash it instead"
            in message
        )
        assert "sales_order.agreed_payment_date cannot be hashed" in message
        assert "'staff.nope' is not a source column" in message

    def test_hashing_needs_a_key_and_the_key_is_a_secret(self, monkeypatch):
        monkeypatch.setenv("TOTES_PII_COLUMNS", '{"staff.email_address": "hash"}')
        with pytest.raises(ValueError, match="TOTES_PII_HASH_KEY"):
            TotesSettings().require_pii_hash_key()
        monkeypatch.setenv("TOTES_PII_HASH_KEY", "s3cr3t-key")
        settings = TotesSettings()
        assert settings.require_pii_hash_key() == b"s3cr3t-key"
        assert "s3cr3t-key" in settings.secrets()  # scrubbed from messages like the passwords
        assert "s3cr3t-key" not in repr(settings)

    def test_drift_policy_per_table_with_a_default(self, monkeypatch):
        monkeypatch.setenv("TOTES_SCHEMA_DRIFT_POLICY", '{"*": "freeze", "design": "warn"}')
        assert TotesSettings().frozen_tables() == frozenset(SOURCE_TABLES) - {"design"}
        monkeypatch.setenv("TOTES_SCHEMA_DRIFT_POLICY", '{"sales_orders": "freeze"}')
        with pytest.raises(ValidationError, match="unknown source table"):
            TotesSettings()


# Secrets are masked by structure, not by text: a URL's password component, a ``password=`` keyword,
# and elsewhere a known secret only as a whole word. (Before, the password ``postgres`` turned
# ``postgresql://postgres:…`` into ``***ql://***:***@…`` and an SFTP password ``p`` turned
# ``SftpError … sftp://`` into ``Sft***Error … sft***://``.)


def settings_with(**urls: str) -> TotesSettings:
    return TotesSettings(**urls)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("password", "url", "message", "expected"),
    [
        # a substring of the scheme, and the user's own name
        (
            "postgres",
            "postgresql://postgres:postgres@db.internal:5432/totesys",
            "cannot connect to the source database postgresql://postgres:postgres@db.internal:5432/totesys: "
            'password authentication failed for user "postgres"',
            "cannot connect to the source database postgresql://postgres:***@db.internal:5432/totesys: "
            'password authentication failed for user "postgres"',
        ),
        # a one-letter SFTP password, inside the class name and the scheme
        (
            "p",
            "sftp://feeds:p@sftp.example.com/in",
            "SftpError: cannot reach sftp://feeds:p@sftp.example.com/in: Permission denied",
            "SftpError: cannot reach sftp://feeds:***@sftp.example.com/in: Permission denied",
        ),
        # a substring of the host and of the error text
        (
            "example",
            "postgresql://etl:example@db.example.com/dw",
            "could not translate host name db.example.com (see examples.txt): example",
            "could not translate host name db.example.com (see examples.txt): ***",
        ),
        # a substring of the user, echoed in a libpq keyword string
        (
            "etl",
            "postgresql://etl_reader:etl@db/dw",
            "connection to server failed (host=db user=etl_reader password=etl dbname=dw)",
            "connection to server failed (host=db user=etl_reader password=*** dbname=dw)",
        ),
        # punctuation, and an unencoded "@" inside the password
        (
            "s3cr@t!",
            "postgresql://etl:s3cr@t!@db/dw",
            "bad URL postgresql://etl:s3cr@t!@db/dw; the secret s3cr@t! again",
            "bad URL postgresql://etl:***@db/dw; the secret *** again",
        ),
    ],
    ids=["in the scheme and the user", "one letter, in a class name", "in the host", "in the user", "punctuation"],
)
def test_a_password_is_masked_where_it_is_and_nowhere_else(password, url, message, expected):
    scheme = url.split("://")[0]
    variable = "sftp_url" if scheme == "sftp" else "source_url"
    masked = scrub(message, settings_with(**{variable: url}))
    assert masked == expected


def test_scrub_removes_passwords_from_messages(monkeypatch):
    monkeypatch.setenv("TOTES_SOURCE_URL", "postgresql://etl:pa55word@db/totesys")
    text = "connection to postgresql://etl:pa55word@db/totesys failed; password pa55word rejected"
    assert "pa55word" not in scrub(text, TotesSettings())


def test_a_password_that_is_also_a_user_name_is_left_to_the_urls_own_masking():
    settings = settings_with(warehouse_url="postgresql://totes:totes@dw/warehouse")
    assert (
        scrub('for user "totes" at postgresql://totes:totes@dw/warehouse', settings)
        == 'for user "totes" at postgresql://totes:***@dw/warehouse'
    )


def test_the_pii_key_is_masked_as_a_whole_word_only():
    settings = TotesSettings(pii_hash_key="hashkey")  # type: ignore[arg-type]
    assert scrub("key hashkey; hashkeys and rehashkey stay", settings) == "key ***; hashkeys and rehashkey stay"


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("postgresql://u:pw@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("s3://bucket/lake", "s3://bucket/lake"),
        ("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:p@h/d", "postgresql://u:***@h/d"),
    ],
)
def test_redact_url_masks_the_password_component(url, redacted):
    assert redact_url(url) == redacted
