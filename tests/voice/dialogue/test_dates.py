from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.voice.dialogue.dates import WEEKDAY_NAMES, normalise, parse_when, say_day

ZONE = ZoneInfo("Europe/Stockholm")
MONDAY = datetime(2026, 11, 23, 10, 0, tzinfo=ZONE)


@pytest.mark.parametrize(
    ("said", "day", "at", "part"),
    [
        ("next Tuesday morning", date(2026, 11, 24), None, "morning"),
        ("the 3rd at half past two", date(2026, 12, 3), time(14, 30), None),
        ("tomorrow at 10 am", date(2026, 11, 24), time(10, 0), None),
        ("the day after tomorrow", date(2026, 11, 25), None, None),
        ("Monday at two thirty", date(2026, 11, 30), time(14, 30), None),
        ("December 8th at 3 pm", date(2026, 12, 8), time(15, 0), None),
        ("the 8th of December", date(2026, 12, 8), None, None),
        ("on the twenty first", date(2026, 12, 21), None, None),
        ("the 30th", date(2026, 11, 30), None, None),
        ("quarter to nine in the morning", None, time(8, 45), "morning"),
        ("Thursday around noon", date(2026, 11, 26), time(12, 0), None),
        ("at 9", None, time(9, 0), None),
        ("at 5 in the afternoon", None, time(17, 0), "afternoon"),
        ("14:30", None, time(14, 30), None),
        ("2026-12-01", date(2026, 12, 1), None, None),
        ("I have three kids", None, None, None),
    ],
)
def test_what_callers_say(said: str, day: date | None, at: time | None, part: str | None) -> None:
    when = parse_when(said, MONDAY)
    assert (when.day, when.at, when.part) == (day, at, part)


def test_a_weekday_said_on_that_day_is_next_week() -> None:
    assert parse_when("Monday", MONDAY).day == date(2026, 11, 30)


def test_a_past_day_of_month_is_next_month() -> None:
    late = MONDAY.replace(day=28)
    assert parse_when("the 3rd", late).day == date(2026, 12, 3)
    december = datetime(2026, 12, 28, 9, tzinfo=ZONE)
    assert parse_when("the 2nd", december).day == date(2027, 1, 2)


@given(st.integers(0, 3000), st.sampled_from(WEEKDAY_NAMES))
def test_a_weekday_is_always_within_the_coming_week(offset: int, name: str) -> None:
    now = MONDAY + timedelta(days=offset)
    day = parse_when(f"next {name}", now).day
    assert day is not None and 1 <= (day - now.date()).days <= 7
    assert WEEKDAY_NAMES[day.weekday()] == name


def test_number_words_become_digits() -> None:
    assert normalise("Two thirty on the third, twenty-first") == "2 30 on the 3rd 21st"
    assert say_day(date(2026, 12, 1)) == "Tuesday the 1st of December"
