from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from appliance.campaign.windows import Calendar, Window, WindowError, parse_windows


def at(s: str, tz: str) -> float:
    return datetime.fromisoformat(s).replace(tzinfo=ZoneInfo(tz)).timestamp()


def test_parse() -> None:
    w = Window.parse("mon-fri,sun 09:00-18:30")
    assert w.days == frozenset({0, 1, 2, 3, 4, 6})
    assert w.spec() == "mon,tue,wed,thu,fri,sun 09:00-18:30"
    for bad in ("mon 18:00-09:00", "fri-mon 09:00-10:00", "xyz 09:00-10:00", "mon 9-10"):
        with pytest.raises(WindowError):
            Window.parse(bad)
    with pytest.raises(WindowError, match="at least one"):
        parse_windows([])


def test_lead_local_time_and_next_open() -> None:
    cal = Calendar(parse_windows(["mon-fri 09:00-18:00"]))
    sthlm = ["Europe/Stockholm"]
    # 2026-11-23 is a Monday.
    assert cal.allowed(at("2026-11-23T09:00", sthlm[0]), "SE", sthlm)
    assert not cal.allowed(at("2026-11-23T08:59", sthlm[0]), "SE", sthlm)
    assert not cal.allowed(at("2026-11-23T18:00", sthlm[0]), "SE", sthlm)
    # Friday evening: next Monday 09:00 local.
    assert cal.next_open(at("2026-11-27T19:00", sthlm[0]), "SE", sthlm) == at(
        "2026-11-30T09:00", sthlm[0]
    )
    # Across a DST change (Europe, 2027-03-28, Easter Sunday): still 09:00 local, on the
    # Tuesday (Easter Monday is a public holiday).
    assert cal.next_open(at("2027-03-25T19:00", sthlm[0]), "SE", sthlm) == at(
        "2027-03-30T09:00", sthlm[0]
    )


def test_country_hours_narrow_the_campaign() -> None:
    cal = Calendar(parse_windows(["mon-sun 08:00-22:00"]))
    paris = ["Europe/Paris"]
    assert not cal.allowed(at("2026-11-23T09:30", paris[0]), "FR", paris)
    assert not cal.allowed(at("2026-11-23T13:30", paris[0]), "FR", paris)  # lunch break
    assert cal.allowed(at("2026-11-23T14:00", paris[0]), "FR", paris)
    assert not cal.allowed(at("2026-11-28T11:00", paris[0]), "FR", paris)  # Saturday
    assert cal.next_open(at("2026-11-23T13:30", paris[0]), "FR", paris) == at(
        "2026-11-23T14:00", paris[0]
    )
    # The same time in Germany (no statutory hours here): the campaign's window alone.
    assert cal.allowed(at("2026-11-23T09:30", "Europe/Berlin"), "DE", ["Europe/Berlin"])


def test_number_in_two_zones_needs_both() -> None:
    cal = Calendar(parse_windows(["mon-fri 09:00-17:00"]))
    zones = ["America/New_York", "America/Chicago"]
    # 09:30 in New York is 08:30 in Chicago: not yet.
    assert not cal.allowed(at("2026-11-23T09:30", zones[0]), "US", zones)
    assert cal.allowed(at("2026-11-23T10:00", zones[0]), "US", zones)
    assert cal.next_open(at("2026-11-23T09:30", zones[0]), "US", zones) == at(
        "2026-11-23T10:00", zones[0]
    )
    # Closes at 17:00 New York time, whatever Chicago says.
    assert cal.closes_at(at("2026-11-23T12:00", zones[0]), "US", zones) == at(
        "2026-11-23T17:00", zones[0]
    )


def test_never_open() -> None:
    cal = Calendar(parse_windows(["sat 10:00-12:00"]))
    assert cal.next_open(at("2026-11-23T10:00", "Europe/Madrid"), "ES", ["Europe/Madrid"]) is None


def test_public_holidays_close_the_day() -> None:
    cal = Calendar(parse_windows(["mon-fri 09:00-18:00"]))
    sthlm = ["Europe/Stockholm"]
    # Friday 2026-12-25 (Christmas Day) and Saturday the 26th: next open Monday the 28th.
    christmas = at("2026-12-25T10:00", sthlm[0])
    assert not cal.allowed(christmas, "SE", sthlm)
    assert cal.holiday(christmas, "SE", sthlm) == "Christmas Day"
    assert cal.next_open(christmas, "SE", sthlm) == at("2026-12-28T09:00", sthlm[0])
    # Thursday evening before: the window skips Friday.
    assert cal.next_open(at("2026-12-24T19:00", sthlm[0]), "SE", sthlm) == at(
        "2026-12-28T09:00", sthlm[0]
    )
    assert cal.holiday(at("2026-05-14T10:00", sthlm[0]), "SE", sthlm) == "Ascension Day"
    # A country's holiday is not another's: US Thanksgiving (Thursday 2026-11-26) closes US
    # leads only.
    ny = ["America/New_York"]
    assert not cal.allowed(at("2026-11-26T10:00", ny[0]), "US", ny)
    assert cal.allowed(at("2026-11-26T10:00", sthlm[0]), "SE", sthlm)
    # Holidays not blocking: an ordinary Friday.
    open_cal = Calendar(parse_windows(["mon-fri 09:00-18:00"]), block_holidays=False)
    assert open_cal.allowed(christmas, "SE", sthlm)
    assert open_cal.holiday(christmas, "SE", sthlm) is None
    # A country the holiday rules do not know: windows alone.
    assert cal.allowed(at("2026-12-25T10:00", "UTC"), "ZZ", ["UTC"])


def test_holiday_is_the_leads_local_date() -> None:
    cal = Calendar(parse_windows(["mon-sun 00:00-23:59"]))
    # 23:30 UTC on Christmas Eve is already Christmas Day in Stockholm.
    t = at("2026-12-24T23:30", "UTC")
    assert not cal.allowed(t, "SE", ["Europe/Stockholm"])
    assert cal.holiday(t, "SE", ["Europe/Stockholm"]) == "Christmas Day"
    assert cal.allowed(t, "SE", ["UTC"])
    # A number in two zones is closed when either one's date is a holiday.
    assert not cal.allowed(t, "SE", ["UTC", "Europe/Stockholm"])
    assert cal.holiday(t, "SE", ["UTC", "Europe/Stockholm"]) == "Christmas Day"
