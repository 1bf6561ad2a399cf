"""The scripted callers (callers/*.json) run against the dialogue engine, and checked.

Each file: `turns` (what the caller says, in order; null = silence), `expect` (task, status,
slots, transfer, dnc; optionally answered fact keys and the count of unanswered questions),
optionally `busy` (slot starts already booked), `booked` (existing bookings with a name, for
cancellations) and `caller_id`. Every call happens at CALL_TIME on the dev config's `booking`
line (a Monday morning in Stockholm), so "next Tuesday" is always 2026-11-24. The line's playbook
runs with `spell_names` on (`scripted`): a caller who gives a name is asked to spell it, and
their script spells it in the spelling alphabet.

Used by the unit test (text turns), bench/dialogue.py (text turns and Piper audio through
Whisper) and the integration test (audio through Asterisk).
"""

from __future__ import annotations

import asyncio
import json
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from appliance import config
from appliance.config import Config
from appliance.voice.dialogue.calendar import Booking, MemoryCalendar
from appliance.voice.dialogue.dates import parse_when, say_day
from appliance.voice.dialogue.engine import DialogueEngine, Outcome, _say_phone
from appliance.voice.dialogue.extract import IntentModel
from appliance.voice.dialogue.playbook import PlaybookConfig
from appliance.voice.dialogue.say import allowed, invented, sentences
from appliance.voice.dialogue.spelling import spelled_name

REPO = Path(__file__).resolve().parents[3]
CALLERS = Path(__file__).resolve().parent / "callers"
DEV = REPO / "config" / "callvault.dev.toml"
LINE = "booking"
REGION = "SE"


def dev_config(state_dir: Path | str = "/tmp/callvault-dialogue") -> Config:
    raw = tomllib.loads(DEV.read_text())
    raw["state_dir"] = str(state_dir)
    return config.parse(raw, base_dir=DEV.parent, source=DEV)


def scripted(pb: PlaybookConfig) -> PlaybookConfig:
    """The booking line's playbook as the scripted callers meet it: names are spelt."""
    return replace(pb, spell_names=True)


def playbook() -> PlaybookConfig:
    """The dev config's booking line playbook, as configured."""
    line = dev_config().line_by_name(LINE)
    assert line is not None and line.playbook is not None
    return line.playbook


def call_time(pb: PlaybookConfig) -> datetime:
    return datetime(2026, 11, 23, 10, 0, tzinfo=pb.zone)


@dataclass(frozen=True)
class Caller:
    id: str
    category: str
    turns: list[str | None]
    expect: dict[str, Any]
    busy: list[str] = field(default_factory=list)
    booked: list[dict[str, str]] = field(default_factory=list)
    caller_id: str | None = None
    path: Path | None = None


def load_callers(directory: Path = CALLERS) -> list[Caller]:
    out = []
    for path in sorted(directory.glob("*.json")):
        raw = json.loads(path.read_text())
        out.append(
            Caller(
                id=raw["id"],
                category=raw["category"],
                turns=raw["turns"],
                expect=raw["expect"],
                busy=raw.get("busy", []),
                booked=raw.get("booked", []),
                caller_id=raw.get("caller_id"),
                path=path,
            )
        )
    return out


def calendar_for(caller: Caller, pb: PlaybookConfig) -> MemoryCalendar:
    cal = MemoryCalendar()
    step = timedelta(minutes=pb.slot_minutes)
    for i, at in enumerate(caller.busy):
        start = datetime.fromisoformat(at).replace(tzinfo=pb.zone)
        cal.bookings.append(Booking(i + 1, LINE, start, start + step, "earlier", {"name": "x"}))
    for j, b in enumerate(caller.booked):
        start = datetime.fromisoformat(b["at"]).replace(tzinfo=pb.zone)
        details = {k: v for k, v in b.items() if k != "at"}
        cal.bookings.append(Booking(100 + j, LINE, start, start + step, "earlier", details))
    return cal


@dataclass
class Result:
    caller: Caller
    outcome: Outcome
    agent: list[str]
    heard: list[str | None]
    transferred: bool
    dnc: bool
    problems: list[str]
    invented: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def ok_but_name(self) -> bool:
        """Right except for the spelling of the caller's name (what Whisper wrote for it)."""
        rest = [p for p in self.problems if not p.startswith("slots ")]
        if rest:
            return False
        got = {k: v for k, v in self.outcome.slots.items() if k not in ("part", "name")}
        want = {k: v for k, v in self.caller.expect["slots"].items() if k != "name"}
        named = ("name" in self.outcome.slots) == ("name" in self.caller.expect["slots"])
        return got == want and named


def check(caller: Caller, outcome: Outcome, *, transferred: bool, dnc: bool) -> list[str]:
    exp = caller.expect
    problems = []
    if outcome.task != exp["task"]:
        problems.append(f"task {outcome.task!r} != {exp['task']!r}")
    if outcome.status != exp["status"]:
        problems.append(f"status {outcome.status!r} != {exp['status']!r}")
    slots = {k: v for k, v in outcome.slots.items() if k != "part"}
    if slots != exp["slots"]:
        problems.append(f"slots {slots} != {exp['slots']}")
    if transferred != exp["transfer"]:
        problems.append(f"transfer {transferred} != {exp['transfer']}")
    if dnc != exp["dnc"]:
        problems.append(f"dnc {dnc} != {exp['dnc']}")
    if "answered" in exp and outcome.answered != exp["answered"]:
        problems.append(f"answered {outcome.answered} != {exp['answered']}")
    if "unanswered" in exp and outcome.unanswered != exp["unanswered"]:
        problems.append(f"unanswered {outcome.unanswered} != {exp['unanswered']}")
    return problems


def grounds(
    pb: PlaybookConfig, heard: list[str | None], outcome: Outcome, now: datetime
) -> set[str]:
    """What an agent sentence may state on this call: the sheet, the caller's own words, the
    days they resolve to and the names they spell, the collected slots (as read back), the
    times the calendar offered. Independent of what the engine passed to its templates."""
    sources = [pb.sheet_text(), *(h for h in heard if h)]
    for h in heard:
        if h:
            day = parse_when(h, now).day
            if day is not None:
                sources.append(say_day(day))
            if (spelt := spelled_name(h)) is not None:
                sources.append(spelt)
    for key, value in outcome.slots.items():
        sources.append(value)
        if key == "date":
            sources.append(say_day(date.fromisoformat(value)))
        if key == "phone":
            sources.append(_say_phone(value))
    sources += outcome.offered
    return allowed(sources)


def invented_claims(pb: PlaybookConfig, agent: list[str], heard: list[str | None],
                    outcome: Outcome, now: datetime) -> list[str]:  # fmt: skip
    ok = grounds(pb, heard, outcome, now)
    return [f"{s!r}: {sorted(bad)}" for text in agent for s in sentences(text)
            if (bad := invented(s, ok))]  # fmt: skip


Listen = Callable[[str | None, DialogueEngine], "str | None"]
"""(the scripted turn, the engine about to hear it: what it expects) → what the agent heard
(None: silence)."""


async def run_text(
    caller: Caller,
    pb: PlaybookConfig,
    *,
    intents: IntentModel | None = None,
    heard: list[str | None] | None = None,
    listen: Listen | None = None,
) -> Result:
    """Play the caller's turns to an engine: as written, as `heard` (what Whisper made of
    their audio), or as `listen` hears each one, told what the engine expects (a spelling, a
    day), as the live agent does."""
    now = call_time(pb)
    engine = DialogueEngine(
        pb,
        line=LINE,
        call_id=f"scripted-{caller.id}",
        calendar=calendar_for(caller, pb),
        region=REGION,
        caller=caller.caller_id,
        can_transfer=True,
        intents=intents,
        clock=lambda: now,
    )
    said = [engine.greet().text]
    scripted = heard if heard is not None else caller.turns
    turns: list[str | None] = []
    action = ""
    for line in scripted:
        if engine.ended:
            break
        turn = line
        if listen is not None and line is not None:
            turn = await asyncio.to_thread(listen, line, engine)
        turns.append(turn)
        reply = await (engine.silence() if turn is None else engine.hear(turn))
        said.append(reply.text)
        action = reply.action or action
    transferred = action == "transfer"
    dnc = engine.out.status == "opted_out"
    problems = check(caller, engine.out, transferred=transferred, dnc=dnc)
    bad = invented_claims(pb, said, turns, engine.out, now)
    return Result(caller, engine.out, said, turns, transferred, dnc, problems, bad)
