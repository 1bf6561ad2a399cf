"""Days and times as callers say them, resolved against the call's moment in the line's zone.

Deterministic on purpose: "next Tuesday morning", "the 3rd at half past two", "tomorrow at 10"
must resolve the same way on every call, and a 135M model cannot be trusted with arithmetic on
calendars. Conventions (a receptionist's, documented so tests can hold them):

- a weekday ("Tuesday", "next Tuesday", "this Tuesday", "on Tuesday") is the nearest such day
  after today (said on a Tuesday, it is the Tuesday a week later);
- a day of the month ("the 3rd") is in this month if it is still to come, else in the next;
- an hour from 1 to 7 without am/pm is in the afternoon (nobody books a 3 a.m. appointment);
  "morning", "afternoon", "evening" without a time are parts of the day (`part`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

WEEKDAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTH_NAMES = (
    "january", "february", "march", "april", "may", "june", "july", "august", "september",
    "october", "november", "december",
)  # fmt: skip
PARTS = {"morning": (0, 12 * 60), "afternoon": (12 * 60, 17 * 60), "evening": (17 * 60, 24 * 60)}

_UNITS = {
    "zero": 0, "oh": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19,
}  # fmt: skip
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50}
_ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
    "eighth": 8, "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13,
    "fourteenth": 14, "fifteenth": 15, "sixteenth": 16, "seventeenth": 17, "eighteenth": 18,
    "nineteenth": 19, "twentieth": 20, "thirtieth": 30,
}  # fmt: skip


@dataclass(frozen=True)
class When:
    day: date | None = None
    at: time | None = None
    part: str | None = None
    """morning / afternoon / evening, when no clock time was said."""

    @property
    def empty(self) -> bool:
        return self.day is None and self.at is None and self.part is None


def normalise(text: str) -> str:
    """Lowercase words and digits; number words become digits ("two thirty" → "2 30",
    "third" → "3rd", "twenty first" → "21st")."""
    t = text.lower().replace("-", " ").replace("\u2019", "'")
    t = re.sub(r"(\d)\s*([ap])\.?\s?m\b\.?", r"\1 \2m", t)  # 2pm, 2 p.m. → 2 pm
    t = re.sub(r"\b([ap])\.\s?m\.", r"\1m", t)
    t = re.sub(r"[^a-z0-9:' ]+", " ", t)
    words = t.split()
    out: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        nxt = words[i + 1] if i + 1 < len(words) else ""
        if w in _TENS and nxt in _ORDINALS and _ORDINALS[nxt] < 10:
            out.append(f"{_TENS[w] + _ORDINALS[nxt]}{_suffix(_TENS[w] + _ORDINALS[nxt])}")
            i += 2
            continue
        if w in _TENS and nxt in _UNITS and 0 < _UNITS[nxt] < 10:
            out.append(str(_TENS[w] + _UNITS[nxt]))
            i += 2
            continue
        if w in _ORDINALS:
            out.append(f"{_ORDINALS[w]}{_suffix(_ORDINALS[w])}")
        elif w in _TENS:
            out.append(str(_TENS[w]))
        elif w in _UNITS and w != "oh":
            out.append(str(_UNITS[w]))
        elif w == "oh" and out and out[-1].isdigit():
            out.append("0")  # "two oh five" → 2 0 5 (times, numbers)
        else:
            out.append(w)
        i += 1
    return " ".join(out)


def _suffix(n: int) -> str:
    if 10 <= n % 100 <= 20:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


_MONTH = "|".join(MONTH_NAMES)
_WEEKDAY = re.compile(r"\b(?:(next|this|coming)\s+)?(" + "|".join(WEEKDAY_NAMES) + r")\b")
_ISO = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_DAY_OF_MONTH = re.compile(
    rf"\b(?:(?:the\s+)?(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?({_MONTH})"
    rf"|({_MONTH})\s+(?:the\s+)?(\d{{1,2}})(?:st|nd|rd|th)?)\b"
)
_ORDINAL_DAY = re.compile(r"\b(?:the\s+)?(\d{1,2})(st|nd|rd|th)\b")
_CLOCK = re.compile(r"\b(\d{1,2})[:.](\d{2})\s*(am|pm)?\b")
# "pass": how Whisper often hears "past" on the phone; "round": how it often hears "around".
_HALF = re.compile(r"\b(half|quarter)\s+(past|pass|to)\s+(\d{1,2})\b")
_AT = re.compile(
    r"\b(?:at|around|round|about|for|by)\s+(\d{1,2})(?:\s+(\d{2}))?(?:\s*(am|pm|o'?clock))?\b"
)
_BARE = re.compile(r"\b(\d{1,2})(?:\s+(\d{2}))?\s*(am|pm|o'?clock)\b")
_NOON = re.compile(r"\b(noon|midday|lunchtime)\b")


def parse_when(text: str, now: datetime) -> When:
    """The day and time `text` names, relative to `now` (aware, in the line's zone)."""
    t = normalise(text)
    day = _iso(text) or _day(t, now.date())
    return When(day=day, at=_time(t), part=_part(t))


def _iso(text: str) -> date | None:
    if m := _ISO.search(text):
        try:
            return date(int(m[1]), int(m[2]), int(m[3]))
        except ValueError:
            return None
    return None


def _day(t: str, today: date) -> date | None:  # noqa: PLR0911, PLR0912 - one rule per form, in order
    if re.search(r"\bday after tomorrow\b", t):
        return today + timedelta(days=2)
    if re.search(r"\btomorrow\b", t):
        return today + timedelta(days=1)
    if re.search(r"\btoday\b|\bthis (?:morning|afternoon|evening)\b|\btonight\b", t):
        return today
    if m := _DAY_OF_MONTH.search(t):
        day = int(m[1] or m[4])
        month = MONTH_NAMES.index(m[2] or m[3]) + 1
        for year in (today.year, today.year + 1):
            try:
                d = date(year, month, day)
            except ValueError:
                return None
            if d >= today:
                return d
        return None
    if m := _WEEKDAY.search(t):
        target = WEEKDAY_NAMES.index(m[2])
        ahead = (target - today.weekday()) % 7 or 7
        return today + timedelta(days=ahead)
    for m in _ORDINAL_DAY.finditer(t):
        day = int(m[1])
        if not 1 <= day <= 31:
            continue
        for months in range(3):
            y, mo = (
                today.year + (today.month - 1 + months) // 12,
                (today.month - 1 + months) % 12 + 1,
            )
            try:
                d = date(y, mo, day)
            except ValueError:
                continue
            if d >= today:
                return d
    return None


def _hour(h: int, suffix: str | None, t: str) -> int | None:
    if not 0 <= h <= 23:
        return None
    if suffix == "pm" and h < 12:
        return h + 12
    if suffix == "am":
        return 0 if h == 12 else h
    if h < 12 and re.search(r"\b(afternoon|evening|tonight)\b", t):
        return h + 12
    if 1 <= h <= 7 and not re.search(r"\bmorning\b", t):
        return h + 12  # business hours: "at two" is 14:00
    return h


def _time(t: str) -> time | None:
    if m := _CLOCK.search(t):
        h = _hour(int(m[1]), m[3], t)
        if h is not None and int(m[2]) < 60:
            return time(h, int(m[2]))
    if m := _HALF.search(t):
        base = int(m[3])
        minute = 30 if m[1] == "half" else 15 if m[2] != "to" else 45
        if m[2] == "to":
            base -= 1
        h = _hour(base, None, t)
        return time(h, minute) if h is not None else None
    for rx in (_AT, _BARE):
        for m in rx.finditer(t):
            # "the 3rd" is a day, "at 3" an hour; a following ordinal suffix was not matched.
            suffix = m[3].replace("'", "") if m[3] else None
            minute = int(m[2]) if m[2] else 0
            h = _hour(int(m[1]), suffix if suffix in {"am", "pm"} else None, t)
            if h is not None and minute < 60:
                return time(h, minute)
    if _NOON.search(t):
        return time(12, 0)
    return None


def _part(t: str) -> str | None:
    for part in PARTS:
        if re.search(rf"\b{part}\b", t):
            return part
    return None


def say_day(d: date) -> str:
    """How the agent says a day: "Tuesday the 1st of December"."""
    weekday, month = WEEKDAY_NAMES[d.weekday()], MONTH_NAMES[d.month - 1]
    return f"{weekday.capitalize()} the {d.day}{_suffix(d.day)} of {month.capitalize()}"


def say_time(t: time) -> str:
    """24-hour, as receptionists in most of Europe say it on the phone: "14:30"."""
    return f"{t.hour:02d}:{t.minute:02d}"
