"""File feeds end to end: a real SFTP server on 127.0.0.1 (asyncssh), the raw zone in a versioned
bucket of the S3 server (moto), real PostgreSQL, a real Prefect API.

The check is independent of the loader: the expected warehouse is computed from the files that are
on the SFTP server (parsed here with the csv module) and compared row by row, lineage included.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from datetime import date, timedelta
from decimal import Decimal
from urllib.parse import urlsplit

import boto3
import pytest

from tests.integration.conftest import (
    RATES,
    Feeds,
    execute,
    install_currencies,
    rates_file,
    scalar,
)


@pytest.fixture
def feeds(
    request, sftp_server, versioned_files_url, databases, s3_lake_url, prefect_api, tmp_path, monkeypatch
) -> Feeds:
    """Feeds with the raw zone in a versioned S3 bucket, or (param "local") in a local folder."""
    files_url = versioned_files_url
    if getattr(request, "param", "s3") == "local":
        files_url = str(tmp_path / "files")
        monkeypatch.setenv("TOTES_FILES_URL", files_url)
    monkeypatch.setenv("TOTES_WAREHOUSE_URL", databases.warehouse_url)
    monkeypatch.setenv("TOTES_LAKE_URL", s3_lake_url)
    install_currencies(databases.warehouse_url, {1: "GBP", 2: "USD", 3: "EUR"})
    return Feeds(sftp_server.root, files_url, databases.warehouse_url)


@pytest.mark.parametrize("feeds", ["s3", "local"], indirect=True)
def test_new_amended_resent_and_removed_files_converge(feeds):
    february = rates_file(date(2024, 2, 1), 7)
    feeds.drop("rates-2024-02-w1.csv", february)
    feeds.drop("rates-2024-02-w2.csv", rates_file(date(2024, 2, 8), 7))
    feeds.drop("notes.txt", b"not part of the feed: the glob is *.csv")

    summary = feeds.run()
    assert feeds.actual() == feeds.expected()
    assert sum(feeds.actual().values()) == 2 * 7 * 3
    assert [len(r.new_versions) for r in summary.feeds] == [2]
    store = feeds.store()
    assert len(store.raw_versions("exchange_rates", "rates-2024-02-w1.csv")) == 1

    # Amended: one day dropped, one rate corrected. Old rows go, new rows come, the old version stays in raw.
    amended = rates_file(date(2024, 2, 1), 6, RATES | {"USD": Decimal("1.27000000")})
    feeds.drop("rates-2024-02-w1.csv", amended)
    summary = feeds.run()
    assert feeds.actual() == feeds.expected()
    assert sum(feeds.actual().values()) == (6 + 7) * 3
    versions = store.raw_versions("exchange_rates", "rates-2024-02-w1.csv")
    assert len(versions) == 2
    assert store.read_raw("exchange_rates", "rates-2024-02-w1.csv", versions[0]) == february
    assert store.read_raw("exchange_rates", "rates-2024-02-w1.csv", versions[1]) == amended
    assert (
        scalar(
            feeds.warehouse_url,
            "select count(distinct _source_version) from fact_exchange_rate "
            "where _source_file = 'exchange-rates/rates-2024-02-w1.csv'",
        )
        == 1
    )
    assert (
        scalar(
            feeds.warehouse_url,
            "select min(_source_version) from fact_exchange_rate "
            "where _source_file = 'exchange-rates/rates-2024-02-w1.csv'",
        )
        == versions[1]
    )

    # Re-sent with identical content (new mtime): no new version, nothing loaded.
    before = feeds.snapshot()
    feeds.drop("rates-2024-02-w2.csv", rates_file(date(2024, 2, 8), 7))
    summary = feeds.run()
    report = summary.feeds[0]
    assert report.identical_resends == ["rates-2024-02-w2.csv"] and report.new_versions == []
    assert report.files_loaded == [] and report.rows_inserted == report.rows_deleted == 0
    assert len(store.raw_versions("exchange_rates", "rates-2024-02-w2.csv")) == 1
    assert feeds.snapshot() == before

    # Nothing changed at all: nothing is even downloaded.
    summary = feeds.run()
    assert summary.feeds[0].identical_resends == [] and feeds.snapshot() == before

    # Removed from SFTP: its rows go, and it leaves staging (its raw versions stay).
    feeds.remove("rates-2024-02-w1.csv")
    summary = feeds.run()
    assert summary.feeds[0].files_removed == ["exchange-rates/rates-2024-02-w1.csv"]
    assert feeds.actual() == feeds.expected()
    assert set(store.staged("exchange_rates")) == {"rates-2024-02-w2.csv"}
    assert len(store.raw_versions("exchange_rates", "rates-2024-02-w1.csv")) == 2


def test_a_same_size_rewrite_within_the_same_second_is_loaded(feeds):
    """A partner corrects a rate (1.16880000 -> 1.16890000) within the second it uploaded the file:
    same size, same mtime (SFTP mtimes have one-second resolution). The fetch that saw the first
    content saw it too soon to trust its mtime, so the next run downloads the file again and loads
    the correction."""
    path = feeds.folder / "rates-2024-03-w1.csv"
    uploaded = int(time.time())
    path.write_bytes(rates_file(date(2024, 3, 1), 7, RATES | {"USD": Decimal("1.16880000")}))
    os.utime(path, (uploaded, uploaded))
    feeds.run()
    assert feeds.actual() == feeds.expected()

    corrected = rates_file(date(2024, 3, 1), 7, RATES | {"USD": Decimal("1.16890000")})
    assert len(corrected) == path.stat().st_size
    path.write_bytes(corrected)
    os.utime(path, (uploaded, uploaded))  # the same second
    feeds.run()
    assert feeds.actual() == feeds.expected(), "the same-second correction was not loaded"
    assert len(feeds.store().raw_versions("exchange_rates", path.name)) == 2


def test_malformed_files_are_quarantined_alerted_once_and_the_rest_loads(feeds, sns_inbox, monkeypatch):
    from flows.files import FeedFilesRefused

    topic, received = sns_inbox
    monkeypatch.setenv("TOTES_ALERT_SNS_TOPIC_ARN", topic)
    feeds.drop("good.csv", rates_file(date(2024, 3, 1), 3))
    feeds.drop("amended-later.csv", rates_file(date(2024, 3, 10), 2))
    feeds.run()
    loaded_before = feeds.actual()

    bad_rate = rates_file(date(2024, 3, 20), 2).replace(b"1.26340000", b"1.2634abc", 1)
    feeds.drop("bad-rate.csv", bad_rate)
    feeds.drop("wrong-columns.csv", b"day,currency,rate\n2024-03-25,EUR,1.1\n")
    feeds.drop("amended-later.csv", b"rate_date,currency_code,rate_to_gbp\n2024-03-10,EUR,1.1\n2024-02-30,USD,1.2\n")
    feeds.drop("more-good.csv", rates_file(date(2024, 3, 5), 2))

    with pytest.raises(FeedFilesRefused) as refused:
        feeds.run()
    message = str(refused.value)
    assert "exchange-rates/bad-rate.csv line 4, column rate_to_gbp: '1.2634abc' is not a valid decimal(18,8)" in message
    assert "exchange-rates/wrong-columns.csv line 1: missing column(s) rate_date, currency_code, rate_to_gbp" in message
    assert "exchange-rates/amended-later.csv line 3, column rate_date: '2024-02-30' is not a valid date" in message
    # The good new file loaded; the amended file's previous good version is still loaded.
    bad = ("bad-rate.csv", "wrong-columns.csv", "amended-later.csv")
    expected = loaded_before + feeds.expected(skip=(*bad, "good.csv"))
    assert feeds.actual() == expected
    alerts = received()
    assert len(alerts) == 1
    assert "bad-rate.csv line 4" in alerts[0]["Message"] and "totesys-files" in alerts[0]["Subject"]
    quarantined = feeds.store().quarantined("exchange_rates")
    assert {name for name, _ in quarantined} == {"bad-rate.csv", "wrong-columns.csv", "amended-later.csv"}

    # Next run: the same bad versions are still there; no new alert, no failure, nothing changes.
    summary = feeds.run()
    assert len(summary.feeds[0].still_quarantined) == 3
    assert received() == []
    assert feeds.actual() == expected

    # The partner fixes the files: the fixed versions load and replace the old ones.
    feeds.drop("bad-rate.csv", rates_file(date(2024, 3, 20), 2))
    feeds.remove("wrong-columns.csv")
    feeds.drop("amended-later.csv", rates_file(date(2024, 3, 10), 1))
    feeds.run()
    assert feeds.actual() == feeds.expected()


def test_unknown_currency_and_conflicting_keys_wait_until_they_can_load(feeds):
    from flows.files import FeedFilesRefused

    feeds.drop("a.csv", rates_file(date(2024, 4, 1), 2))
    feeds.drop("b-overlaps-a.csv", rates_file(date(2024, 4, 2), 2))
    feeds.drop("yen.csv", rates_file(date(2024, 4, 1), 1, {"JPY": Decimal("190.5")}))
    with pytest.raises(FeedFilesRefused) as refused:
        feeds.run()
    message = str(refused.value)
    assert "exchange-rates/yen.csv line 2: currency_code 'JPY' is not in dim_currency" in message
    assert "exchange-rates/b-overlaps-a.csv line 2: its natural key is already held by exchange-rates/a.csv" in message
    assert feeds.actual() == feeds.expected(skip=("b-overlaps-a.csv", "yen.csv"))

    # ToteSys gains the currency (the ETL loads it) and the partner trims the overlap: both load.
    install_currencies(feeds.warehouse_url, {4: "JPY"})
    feeds.drop("b-overlaps-a.csv", rates_file(date(2024, 4, 3), 1))
    feeds.run()
    assert feeds.actual() == feeds.expected()
    assert feeds.store().quarantined("exchange_rates") == {} or all(
        record.stage == "load" and record.file != "yen.csv"
        for record in feeds.store().quarantined("exchange_rates").values()
    )


def test_crashes_between_and_inside_stages_converge(feeds):
    from tasks.feeds.fetch import fetch_feed
    from tasks.feeds.stage import stage_feed

    feeds.drop("one.csv", rates_file(date(2024, 5, 1), 3))
    feeds.drop("two.csv", rates_file(date(2024, 5, 4), 3))
    # Crash after fetch: the raw versions exist, nothing is staged or loaded.
    fetch_feed("exchange_rates")
    # Crash after the raw writes but before the fetch state was saved: the state is a cache.
    feeds.store().lake.fs.rm(feeds.store().lake.full("state/exchange_rates.json"))
    feeds.run()
    assert feeds.actual() == feeds.expected()
    assert len(feeds.store().raw_versions("exchange_rates", "one.csv")) == 1

    # Crash after staging, before the load.
    feeds.drop("one.csv", rates_file(date(2024, 5, 1), 2))
    fetched = fetch_feed("exchange_rates")
    stage_feed("exchange_rates", fetched.latest)
    feeds.run()
    assert feeds.actual() == feeds.expected()

    # A crash inside the load transaction (a failing trigger): the warehouse keeps its old state whole.
    feeds.remove("two.csv")
    feeds.drop("three.csv", rates_file(date(2024, 5, 10), 3))
    before = feeds.snapshot()
    execute(
        feeds.warehouse_url,
        "create function fail_insert() returns trigger language plpgsql as "
        "$$ begin raise exception 'simulated crash during the load'; end $$",
        "create trigger crash before insert on fact_exchange_rate for each row execute function fail_insert()",
    )
    with pytest.raises(Exception, match="simulated crash"):
        feeds.run()
    assert feeds.snapshot() == before
    execute(feeds.warehouse_url, "drop trigger crash on fact_exchange_rate")
    feeds.run()
    assert feeds.actual() == feeds.expected()


def test_a_hundred_files_in_one_run(feeds):
    first = date(2023, 1, 1)
    for n in range(100):
        feeds.drop(f"rates-{n:03d}.csv", rates_file(first + timedelta(days=3 * n), 3))
    started = time.perf_counter()
    summary = feeds.run()
    elapsed = time.perf_counter() - started
    print(f"100 files, 900 rows: fetched, staged and loaded in {elapsed:.1f} s")
    assert summary.feeds[0].files_on_sftp == 100 and len(summary.feeds[0].files_loaded) == 100
    assert feeds.actual() == feeds.expected()
    assert sum(feeds.actual().values()) == 900


def test_the_cli_reports_and_fails_with_the_file_and_line(feeds, tmp_path):
    import subprocess
    import sys

    feeds.drop("good.csv", rates_file(date(2024, 6, 1), 2))
    done = subprocess.run([sys.executable, "-m", "flows.cli", "files"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "exchange_rates" in done.stdout and "totes files: done" in done.stdout
    feeds.drop("empty.csv", b"")
    done = subprocess.run([sys.executable, "-m", "flows.cli", "files"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "exchange-rates/empty.csv: the file is empty" in done.stderr
    assert feeds.actual() == feeds.expected(skip=("empty.csv",))
    # The SFTP password is nowhere in what the failed run printed or wrote to the feed store.
    password = urlsplit(os.environ["TOTES_SFTP_URL"]).password
    assert password and password not in done.stdout + done.stderr
    store = feeds.store().lake
    for path in store.fs.find(store.root):
        assert password.encode() not in store.fs.cat_file(path), path


def test_refuses_an_unversioned_bucket_and_an_untrusted_or_wrong_login(
    feeds, s3_endpoint, sftp_server, tmp_path, monkeypatch
):
    from flows.files import FeedFilesRefused

    feeds.drop("good.csv", rates_file(date(2024, 6, 1), 2))
    bucket = f"plain-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    monkeypatch.setenv("TOTES_FILES_URL", f"s3://{bucket}/files")
    with pytest.raises(FeedFilesRefused, match=f"bucket '{bucket}' of TOTES_FILES_URL has versioning off"):
        feeds.run()

    monkeypatch.setenv("TOTES_FILES_URL", feeds.files_url)
    import asyncssh

    impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    (tmp_path / "other_known_hosts").write_text(f"[127.0.0.1]:{sftp_server.port} {impostor}\n")
    monkeypatch.setenv("TOTES_SFTP_KNOWN_HOSTS", str(tmp_path / "other_known_hosts"))
    with pytest.raises(FeedFilesRefused, match=r"host key of 127.0.0.1:\d+ is not trusted"):
        feeds.run()

    monkeypatch.setenv("TOTES_SFTP_KNOWN_HOSTS", str(sftp_server.write_known_hosts(tmp_path / "known_hosts")))
    wrong_url = sftp_server.url.replace(":", ":x", 2).replace("sftp:x//", "sftp://")
    monkeypatch.setenv("TOTES_SFTP_URL", wrong_url)
    with pytest.raises(
        FeedFilesRefused, match="SFTP login to sftp://partner@127.0.0.1:\\d+ failed: permission denied"
    ) as refused:
        feeds.run()
    wrong_password = wrong_url.split(":")[2].split("@")[0]
    assert wrong_password not in str(refused.value)
    assert feeds.actual() == Counter()
