"""Sample feed files: the daily exchange-rates files of the demo and the tests."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import date
from decimal import Decimal


def iter_exchange_rate_rows(days: Iterable[date], rates: dict[str, Decimal]) -> Iterator[tuple[str, str, str]]:
    """(date, currency code, rate) rows of a daily rates file: the demo's and the tests' feed data."""
    for day in days:
        for code, rate in sorted(rates.items()):
            yield day.isoformat(), code, f"{rate:.8f}"


def exchange_rates_csv(days: Iterable[date], rates: dict[str, Decimal]) -> bytes:
    """A daily exchange-rates file in the format of the built-in ``exchange_rates`` feed."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["rate_date", "currency_code", "rate_to_gbp"])
    writer.writerows(iter_exchange_rate_rows(days, rates))
    return out.getvalue().encode()
