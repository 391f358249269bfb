"""The storage form of timestamps: fixed width, UTC, so string order is time order."""
from __future__ import annotations

import datetime as dt

from j1msky.services import clock


def test_storage_form_is_utc_fixed_width_with_microseconds():
    plus_two = dt.timezone(dt.timedelta(hours=2))
    assert clock.iso(dt.datetime(2026, 1, 2, 3, 4, 5, 7, tzinfo=plus_two)) == \
        "2026-01-02T01:04:05.000007Z"
    assert clock.iso(dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc)) == \
        "2026-01-02T00:00:00.000000Z"
    moments = [dt.datetime(year, 12, 31, 23, 59, 59, micro, tzinfo=dt.timezone.utc)
               for year in (1, 999, 2026) for micro in (0, 999_999)]
    stored = [clock.iso(m) for m in moments]
    assert len({len(s) for s in stored}) == 1
    assert sorted(stored) == stored
    assert [clock.parse(s) for s in stored] == moments
