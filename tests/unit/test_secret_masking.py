"""Secrets are masked by structure, not by text: a URL's password component, a ``password=``
keyword, and elsewhere a known secret only as a whole word. (Before, the password ``postgres``
turned ``postgresql://postgres:…`` into ``***ql://***:***@…`` and an SFTP password ``p`` turned
``SftpError … sftp://`` into ``Sft***Error … sft***://``.)"""

from __future__ import annotations

import pytest

from tasks.settings import TotesSettings, redact_url, scrub

pytestmark = pytest.mark.unit


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
)
def test_a_password_is_masked_where_it_is_and_nowhere_else(password, url, message, expected):
    scheme = url.split("://")[0]
    variable = "sftp_url" if scheme == "sftp" else "source_url"
    masked = scrub(message, settings_with(**{variable: url}))
    assert masked == expected


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
    ],
)
def test_redact_url_masks_the_password_component(url, redacted):
    assert redact_url(url) == redacted
