"""The feeds declaration (tasks/feeds/declarations.py): a bad declaration is refused naming the
setting at fault."""

from __future__ import annotations

import re

import pytest

from tasks.feeds.declarations import FeedConfigError, load_feeds


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('target_table = "fact_sales_order"', "is not a feed table"),
        ('target_table = "fact_exchange_rate"\nnatural_key = ["nope"]', "natural_key must be columns"),
        (
            'columns = { rate_date = "date", currency_code = "string", rate_to_gbp = "float" }',
            "unknown column type 'float'",
        ),
        (
            'columns = { rate_date = "string", currency_code = "string", rate_to_gbp = "decimal(18,8)" }',
            "'rate_date' is string but fact_exchange_rate.rate_date is date32",
        ),
        (
            'columns = { "Rate Date" = "date", currency_code = "string", rate_to_gbp = "decimal(18,8)" }',
            "is not a plain lower-case identifier",
        ),
        (
            'lookups.currency_id = { column = "currency_code", table = "pg_authid", match = "rolname" }',
            "is not a warehouse dimension",
        ),
        (
            'lookups.currency_id = { column = "currency_code", table = "dim_currency", match = "code; drop" }',
            "dim_currency has no column 'code; drop'",
        ),
        ("lookups = {}", "no file column or lookup provides fact_exchange_rate.currency_id"),
        ('directory = "../etc"', "directory must not contain '..'"),
        ("surprise = 1", "Extra inputs are not permitted"),
    ],
)
def test_a_bad_feed_declaration_is_refused_with_the_setting_named(tmp_path, body, message):
    base = {
        "directory": '"x"',
        "format": '"csv"',
        "target_table": '"fact_exchange_rate"',
        "natural_key": '["rate_date", "currency_id"]',
        "columns": '{ rate_date = "date", currency_code = "string", rate_to_gbp = "decimal(18,8)" }',
        "lookups.currency_id": '{ column = "currency_code", table = "dim_currency", match = "currency_code" }',
    }
    overridden = {line.split("=", 1)[0].strip() for line in body.splitlines()}
    lines = [
        f"{k} = {v}"
        for k, v in base.items()
        if k not in overridden and not (k.startswith("lookups") and "lookups" in overridden)
    ]
    (tmp_path / "feeds.toml").write_text("[feeds.f]\n" + "\n".join(lines) + "\n" + body + "\n")
    with pytest.raises(FeedConfigError, match=re.escape(message)):
        load_feeds(tmp_path / "feeds.toml")
