"""When a lead may be called: the campaign's windows in the lead's local time, narrowed by the
hours the lead's country allows for marketing calls.

A lead whose number could be in several time zones (a US area code spanning two) is called only
when the time is inside the windows in every one of them, so no call falls outside a window
whichever zone the person is in.

COUNTRY_HOURS are the statutory limits known to the authors (the operator must check them for
their own market, and a campaign can narrow them further but not widen them).

Public holidays: a national public holiday of the lead's country (the `holidays` package, which
ships the rules offline; regional holidays are not known, as a number does not say its region)
is outside every window, as most countries' telemarketing rules have it (France's décret
2022-1313 names them). A campaign can turn that off (`Settings.block_public_holidays`). The day
is the lead's local date, in each of its zones.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from types import MappingProxyType
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holiday_rules

from appliance.errors import CallvaultError

log = logging.getLogger(__name__)

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPEC = re.compile(r"^(?P<days>[a-z]{3}(?:-[a-z]{3})?(?:,[a-z]{3}(?:-[a-z]{3})?)*)\s+"
                   r"(?P<start>\d{2}:\d{2})-(?P<end>\d{2}:\d{2})$")  # fmt: skip
SEARCH_DAYS = 15


class WindowError(CallvaultError):
    pass


@dataclass(frozen=True)
class Window:
    """Local times on some weekdays: [start, end). `mon-fri 09:00-18:00`."""

    days: frozenset[int]
    start: time
    end: time

    @classmethod
    def parse(cls, spec: str) -> Window:
        m = _SPEC.match(spec.strip().lower())
        if m is None:
            raise WindowError(
                f"calling window {spec!r}: expected e.g. 'mon-fri 09:00-18:00' or 'sat 10:00-14:00'"
            )
        days: set[int] = set()
        for part in m["days"].split(","):
            first, _, last = part.partition("-")
            if first not in DAYS or (last and last not in DAYS):
                raise WindowError(f"calling window {spec!r}: unknown day in {part!r}")
            a, b = DAYS.index(first), DAYS.index(last or first)
            if b < a:
                raise WindowError(f"calling window {spec!r}: {part!r} runs backwards")
            days.update(range(a, b + 1))
        try:
            start, end = time.fromisoformat(m["start"]), time.fromisoformat(m["end"])
        except ValueError:
            raise WindowError(f"calling window {spec!r}: not a valid time") from None
        if end <= start:
            raise WindowError(f"calling window {spec!r}: ends before it starts")
        return cls(frozenset(days), start, end)

    def spec(self) -> str:
        days = ",".join(DAYS[d] for d in sorted(self.days))
        return f"{days} {self.start:%H:%M}-{self.end:%H:%M}"


def parse_windows(specs: Iterable[str]) -> tuple[Window, ...]:
    out = tuple(Window.parse(s) for s in specs)
    if not out:
        raise WindowError("a campaign needs at least one calling window")
    return out


def _w(*specs: str) -> tuple[Window, ...]:
    return tuple(Window.parse(s) for s in specs)


COUNTRY_HOURS: Mapping[str, tuple[Window, ...]] = MappingProxyType(
    {
        "US": _w("mon-sun 08:00-21:00"),  # TCPA, 47 CFR 64.1200(c)(1)
        "CA": _w("mon-fri 09:00-21:30", "sat-sun 10:00-18:00"),  # CRTC Telemarketing Rules
        "FR": _w("mon-fri 10:00-13:00", "mon-fri 14:00-20:00"),  # décret 2022-1313
        "ES": _w("mon-fri 09:00-21:00"),  # Ley 11/2022, art. 66
    }
)


@functools.lru_cache(maxsize=256)
def _holidays(country: str, year: int) -> Mapping[date, str]:
    """The country's national public holidays in `year` (names in English where the package
    has them); empty for a country the package does not know (logged once)."""
    try:
        rules = holiday_rules.country_holidays(country, years=year)
    except NotImplementedError:
        log.warning("no public holiday rules for country %r: its holidays are not blocked", country)
        return MappingProxyType({})
    if "en_US" in rules.supported_languages:
        rules = holiday_rules.country_holidays(country, years=year, language="en_US")
    return MappingProxyType(dict(rules.items()))


def public_holiday(country: str, day: date) -> str | None:
    """The name of the public holiday `day` is in `country` (ISO alpha-2), None if none."""
    if not country:
        return None
    return _holidays(country.upper(), day.year).get(day)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise WindowError(f"unknown time zone {name!r}") from None


def _intervals(windows: Sequence[Window], day: date, tz: ZoneInfo) -> list[tuple[float, float]]:
    out = []
    for w in windows:
        if day.weekday() in w.days:
            a = datetime.combine(day, w.start, tzinfo=tz).timestamp()
            b = datetime.combine(day, w.end, tzinfo=tz).timestamp()
            out.append((a, b))
    return sorted(out)


def _intersect(
    a: list[tuple[float, float]], b: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    out = []
    for s1, e1 in a:
        for s2, e2 in b:
            s, e = max(s1, s2), min(e1, e2)
            if s < e:
                out.append((s, e))
    return sorted(out)


@dataclass(frozen=True)
class Calendar:
    """The campaign's windows plus the countries' limits."""

    windows: tuple[Window, ...]
    country_hours: Mapping[str, tuple[Window, ...]] = field(default_factory=lambda: COUNTRY_HOURS)
    block_holidays: bool = True
    """A public holiday of the lead's country (in the lead's local date) is closed all day."""

    def _open(self, at: float, country: str, zones: Sequence[str]) -> list[tuple[float, float]]:
        """Allowed intervals (UTC timestamps) over the days around `at`, for all zones."""
        if not zones:
            raise WindowError("a lead needs a time zone")
        result: list[tuple[float, float]] | None = None
        for name in zones:
            tz = zone(name)
            today = datetime.fromtimestamp(at, tz).date()
            spans: list[tuple[float, float]] = []
            for n in range(-1, SEARCH_DAYS):
                day = today + timedelta(days=n)
                if self.block_holidays and public_holiday(country, day) is not None:
                    continue
                own = _intervals(self.windows, day, tz)
                limits = self.country_hours.get(country.upper())
                if limits is not None:
                    own = _intersect(own, _intervals(limits, day, tz))
                spans.extend(own)
            result = spans if result is None else _intersect(result, spans)
        return result or []

    def allowed(self, at: float, country: str, zones: Sequence[str]) -> bool:
        return any(s <= at < e for s, e in self._open(at, country, zones))

    def next_open(self, at: float, country: str, zones: Sequence[str]) -> float | None:
        """`at` if allowed now, else when the next window opens; None: not within the next
        SEARCH_DAYS days (the windows and the country's hours never overlap)."""
        for s, e in self._open(at, country, zones):
            if e > at:
                return max(s, at)
        return None

    def holiday(self, at: float, country: str, zones: Sequence[str]) -> str | None:
        """The public holiday that closes the lead's day at `at` (in any of its zones), if
        holidays block and one does."""
        if not self.block_holidays:
            return None
        for name in zones:
            found = public_holiday(country, datetime.fromtimestamp(at, zone(name)).date())
            if found is not None:
                return found
        return None

    def closes_at(self, at: float, country: str, zones: Sequence[str]) -> float | None:
        for s, e in self._open(at, country, zones):
            if s <= at < e:
                return e
        return None
