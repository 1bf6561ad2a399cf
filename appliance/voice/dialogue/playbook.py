"""A line's playbook: what the agent may say (the facts sheet), which tasks it handles, the
slots each task collects, and the calendar it books into (opening hours, slot length, time zone).

Parsed from the line's `[lines.playbook]` table; every problem names the offending key, so a
bad playbook is a config error at start, never a confused caller. This module imports nothing
from appliance.config (the config imports it).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from appliance.errors import ConfigError

Task = Literal["book", "cancel", "message", "question", "human", "opt_out"]
TASKS: tuple[str, ...] = get_args(Task)
Slot = Literal["name", "phone", "date", "time", "message", "reason"]
SLOTS: tuple[str, ...] = get_args(Slot)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Tasks that collect slots, and the slots they may use (a booking needs a day and a time).
TASK_SLOTS: Mapping[str, tuple[str, ...]] = {
    "book": ("name", "phone", "date", "time", "reason"),
    "cancel": ("name", "phone", "date"),
    "message": ("name", "phone", "message"),
}
REQUIRED: Mapping[str, tuple[str, ...]] = {"book": ("date", "time"), "cancel": ("date",)}
DEFAULT_SLOTS: Mapping[str, tuple[str, ...]] = {
    "book": ("name", "date", "time"),
    "cancel": ("name", "date"),
    "message": ("name", "phone", "message"),
}
_HOURS = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-4]):([0-5][0-9])$")
_KEY = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


@dataclass(frozen=True)
class Fact:
    """One entry of the facts sheet: the agent says `answer` verbatim when the caller's words
    contain any of `keywords` (whole words, case-insensitive)."""

    key: str
    keywords: tuple[str, ...]
    answer: str


@dataclass(frozen=True)
class PlaybookConfig:
    business: str
    """The business's name (the agent may say it)."""
    timezone: str = "UTC"
    """IANA zone the line's dates and opening hours are in ("next Tuesday" is resolved here)."""
    slot_minutes: int = 30
    """Length of one appointment."""
    hours: Mapping[str, tuple[tuple[int, int], ...]] = field(default_factory=dict)
    """Opening hours per weekday (mon…sun): (open, close) in minutes after midnight."""
    horizon_days: int = 60
    """How far ahead appointments may be booked."""
    facts: tuple[Fact, ...] = ()
    tasks: tuple[str, ...] = ("book", "message", "question", "human", "opt_out")
    slots: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_SLOTS))
    """For each collecting task, the slots asked for, in order."""
    max_attempts: int = 2
    """Failed attempts in a row (nothing understood, silence) before the caller is offered a
    person (a transfer when the line has `transfer_to`)."""
    silence_s: float = 8.0
    """Caller silence after the agent spoke that counts as a failed attempt."""
    spell_names: bool = False
    """Ask the caller to spell a name they said (in the spelling alphabet) and keep the spelt
    one: names heard over the phone are often not the names said."""

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def sheet_text(self) -> str:
        """Everything the agent may state: the business name and every fact's answer."""
        return " ".join([self.business, *(f.answer for f in self.facts)])

    def handles(self, task: str) -> bool:
        return task in self.tasks


def parse_playbook(raw: Mapping[str, Any], where: str) -> PlaybookConfig:
    """The playbook of `raw` (a TOML table); ConfigError names the key at `where`."""
    known = {
        "business", "timezone", "slot_minutes", "hours", "horizon_days", "facts", "tasks",
        "slots", "max_attempts", "silence_s", "spell_names",
    }  # fmt: skip
    for key in raw:
        if key not in known:
            raise ConfigError(f"{where}.{key}", "unknown key (check the spelling)")
    business = _text(raw, "business", where, None)
    tz = _text(raw, "timezone", where, "UTC")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{where}.timezone", f"{tz!r} is not an IANA time zone") from None
    slot_minutes = _int(raw, "slot_minutes", where, 30, 5, 480)
    tasks = tuple(_strings(raw, "tasks", where, list(PlaybookConfig.tasks)))
    for i, task in enumerate(tasks):
        if task not in TASKS:
            raise ConfigError(
                f"{where}.tasks[{i}]", f"unknown task {task!r} (expected {', '.join(TASKS)})"
            )
    if len(set(tasks)) != len(tasks):
        raise ConfigError(f"{where}.tasks", "lists a task twice")
    hours = _hours(raw.get("hours", {}), f"{where}.hours")
    if "book" in tasks and not hours:
        raise ConfigError(f"{where}.hours", "a line that books appointments needs opening hours")
    return PlaybookConfig(
        business=business,
        timezone=tz,
        slot_minutes=slot_minutes,
        hours=hours,
        horizon_days=_int(raw, "horizon_days", where, 60, 1, 366),
        facts=_facts(raw.get("facts", []), f"{where}.facts"),
        tasks=tasks,
        slots=_slots(raw.get("slots", {}), f"{where}.slots", tasks),
        max_attempts=_int(raw, "max_attempts", where, 2, 1, 5),
        silence_s=float(_int(raw, "silence_s", where, 8, 2, 60)),
        spell_names=_bool(raw, "spell_names", where, False),
    )


def _text(raw: Mapping[str, Any], key: str, where: str, default: str | None) -> str:
    value = raw.get(key, default)
    if value is None:
        raise ConfigError(f"{where}.{key}", "is required")
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}.{key}", "must be a non-empty string")
    return value.strip()


def _int(  # noqa: PLR0917 - a key and its bounds
    raw: Mapping[str, Any], key: str, where: str, default: int, lo: int, hi: int
) -> int:
    value = raw.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ConfigError(f"{where}.{key}", f"must be an integer between {lo} and {hi}")
    return value


def _bool(raw: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.{key}", "must be true or false")
    return value


def _strings(raw: Mapping[str, Any], key: str, where: str, default: list[str]) -> list[str]:
    value = raw.get(key, default)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}.{key}", "must be a list of strings")
    return cast(list[str], value)


def _hours(raw: Any, where: str) -> dict[str, tuple[tuple[int, int], ...]]:
    if not isinstance(raw, dict):
        raise ConfigError(where, 'must be a table like { mon = "08:00-17:00" }')
    out: dict[str, tuple[tuple[int, int], ...]] = {}
    for day, spans in raw.items():
        if day not in WEEKDAYS:
            raise ConfigError(f"{where}.{day}", f"unknown weekday (expected {', '.join(WEEKDAYS)})")
        items = [spans] if isinstance(spans, str) else spans
        if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
            raise ConfigError(f"{where}.{day}", 'must be "HH:MM-HH:MM" or a list of them')
        parsed: list[tuple[int, int]] = []
        for span in items:
            m = _HOURS.match(span)
            if m is None:
                raise ConfigError(f"{where}.{day}", f"{span!r} is not HH:MM-HH:MM")
            start = int(m[1]) * 60 + int(m[2])
            end = int(m[3]) * 60 + int(m[4])
            if end <= start or end > 24 * 60:
                raise ConfigError(f"{where}.{day}", f"{span!r} closes before it opens")
            parsed.append((start, end))
        parsed.sort()
        if any(a[1] > b[0] for a, b in itertools.pairwise(parsed)):
            raise ConfigError(f"{where}.{day}", "opening spans overlap")
        out[day] = tuple(parsed)
    return out


def _facts(raw: Any, where: str) -> tuple[Fact, ...]:
    if not isinstance(raw, list):
        raise ConfigError(where, "must be an array of tables ([[...facts]])")
    out: list[Fact] = []
    for i, item in enumerate(raw):
        here = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(here, "must be a table")
        for key in item:
            if key not in {"key", "keywords", "answer"}:
                raise ConfigError(f"{here}.{key}", "unknown key (check the spelling)")
        key = _text(item, "key", here, None)
        if not _KEY.match(key):
            raise ConfigError(f"{here}.key", f"{key!r} is not a-z, 0-9 and _")
        keywords = _strings(item, "keywords", here, [])
        if not keywords:
            raise ConfigError(f"{here}.keywords", "needs at least one keyword")
        out.append(
            Fact(
                key=key,
                keywords=tuple(k.lower().strip() for k in keywords),
                answer=_text(item, "answer", here, None),
            )
        )
    if len({f.key for f in out}) != len(out):
        raise ConfigError(where, "two facts share a key")
    return tuple(out)


def _slots(raw: Any, where: str, tasks: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    if not isinstance(raw, dict):
        raise ConfigError(where, 'must be a table like { book = ["name", "date", "time"] }')
    out = {t: s for t, s in DEFAULT_SLOTS.items() if t in tasks}
    for task, slots in raw.items():
        if task not in TASK_SLOTS:
            raise ConfigError(
                f"{where}.{task}", f"task {task!r} collects no slots ({', '.join(TASK_SLOTS)} do)"
            )
        if task not in tasks:
            raise ConfigError(f"{where}.{task}", f"task {task!r} is not in the line's tasks")
        if not isinstance(slots, list) or not all(isinstance(s, str) for s in slots):
            raise ConfigError(f"{where}.{task}", "must be a list of slot names")
        for i, slot in enumerate(slots):
            if slot not in TASK_SLOTS[task]:
                raise ConfigError(
                    f"{where}.{task}[{i}]",
                    f"{slot!r} is not a slot of {task} ({', '.join(TASK_SLOTS[task])})",
                )
        for need in REQUIRED.get(task, ()):
            if need not in slots:
                raise ConfigError(f"{where}.{task}", f"{task} needs the {need!r} slot")
        out[task] = tuple(slots)
    return out
