"""The per-call dialogue state machine of a line with a playbook.

Each caller turn is read by `extract.understand` (rules; the constrained LLM only for an intent
the rules cannot find), merged into the call's slots, and the next state decides the reply from
a template (`say`). Anything the caller says at any point can re-route the call: "stop calling
me" records the opt-out and ends it, "a real person" hands over, a question about the sheet is
answered and the pending question asked again, "no, Wednesday" in a confirmation repairs the
day. Turns that move nothing forward (mumbling, noise, off-topic, silence) count as failed
attempts; `max_attempts` of them in a row hand the caller to a person.

With the playbook's `spell_names`, a name heard in the caller's words is only provisional: the
agent asks for it spelt (`spelling`) and the spelt name fills the slot. An answer to "may I
have your name?" that does not even look like a name (Whisper's "done." for a hum) is a failed
attempt, answered by the spelling question.

States: open → ask:<slot> … (ask:spell after a name) → offer (a nearby free time) → confirm →
anything_else → ended. `expecting` tells the transcriber what the next turn should hold.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

import phonenumbers

from appliance.voice.dialogue import extract, spelling
from appliance.voice.dialogue.calendar import Calendar, choose, day_span, free_slots, is_open
from appliance.voice.dialogue.dates import WEEKDAY_NAMES, When, say_day, say_time
from appliance.voice.dialogue.extract import CALLER_ID, IntentModel, Understanding
from appliance.voice.dialogue.playbook import PlaybookConfig
from appliance.voice.dialogue.say import WHAT, Speaker

log = logging.getLogger(__name__)

Action = str  # "transfer" | "hangup" | ""
_ANGRY = re.compile(
    r"\b(ridiculous|useless|stupid|terrible|awful|unacceptable|fed up|sick of|damn|bloody"
    r"|furious|angry|waste of (my )?time|joke)\b"
)
_SLOT_ORDER = ("name", "date", "time", "reason", "phone", "message")
COLLECTING = ("book", "cancel", "message")


@dataclass
class Reply:
    text: str
    action: Action = ""
    """"transfer": hand the call to the line's person; "hangup": the call is over."""


@dataclass
class Outcome:
    task: str = ""
    status: str = "open"
    """open | done | transferred | opted_out | abandoned"""
    slots: dict[str, str] = field(default_factory=dict)
    """name, phone (E.164), date (ISO), time (HH:MM), message, reason."""
    booking_id: int | None = None
    cancelled_id: int | None = None
    answered: list[str] = field(default_factory=list)
    """Keys of the facts quoted to the caller."""
    unanswered: int = 0
    """Questions the sheet has no answer for."""
    turns: int = 0
    task_turns: int | None = None
    """Caller turns until the task completed (booked, message taken, answered, handed over)."""
    offered: list[str] = field(default_factory=list)
    """Free times the agent proposed (they come from the calendar, not the caller)."""

    def doc(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "status": self.status,
            "slots": dict(self.slots),
            "booking_id": self.booking_id,
            "answered": list(self.answered),
            "unanswered": self.unanswered,
            "turns": self.turns,
            "task_turns": self.task_turns,
        }


class DialogueEngine:
    def __init__(
        self,
        playbook: PlaybookConfig,
        *,
        line: str,
        call_id: str,
        calendar: Calendar,
        region: str = "SE",
        caller: str | None = None,
        can_transfer: bool = True,
        intents: IntentModel | None = None,
        clock: Callable[[], datetime] | None = None,
        speaker: Speaker | None = None,
    ) -> None:
        self.pb = playbook
        self.line = line
        self.call_id = call_id
        self.calendar = calendar
        self.region = region
        self.caller = _e164(caller, region) if caller else None
        self.can_transfer = can_transfer
        self.intents = intents
        self.clock = clock or (lambda: datetime.now(playbook.zone))
        self.speaker = speaker or Speaker(playbook.sheet_text())
        self.state = "open"
        self.task: str | None = None
        self.misses = 0
        self.proposal: datetime | None = None
        self.guessed: str | None = None
        self.heard_name: str | None = None
        """A name heard but not spelt yet (`spell_names`)."""
        self.out = Outcome()

    # ---- public
    @property
    def ended(self) -> bool:
        return self.state == "ended"

    @property
    def expecting(self) -> str:
        """What the caller's next turn should hold, for the transcriber: "spelling" (the
        name in the spelling alphabet), "name", "when" (a day or a time), "words" (a message
        in their own words), or "" (anything)."""
        if self.state == "ask:spell":
            return "spelling"
        if self.state == "ask:name":
            return "name"
        if self.state in ("ask:date", "ask:time", "ask:change"):
            return "when"
        if self.state in ("ask:message", "ask:reason"):
            return "words"
        return ""

    def greet(self, text: str = "") -> Reply:
        """The line's greeting (its own text when set; it must pass the checker too)."""
        if text:
            said = self._checked(text)
            if said:
                return Reply(said)
        return Reply(self._say("greeting", business=self.pb.business))

    async def hear(self, text: str) -> Reply:
        """One caller turn (what Whisper heard); the agent's reply and what to do after it."""
        if self.ended:
            return Reply("")
        if not text.strip():
            return await self.silence()
        self.out.turns += 1
        now = self.clock()
        u = extract.understand(text, self.pb, now, self.region)
        unread = u.when.empty and u.name is None and u.phone is None and u.yes is None
        asking = self.state in ("open", "anything_else")
        if not u.intents and unread and asking and self.intents is not None:
            u.guessed = await asyncio.to_thread(
                self.intents.classify, text, tuple(t for t in self.pb.tasks if t in WHAT)
            )
        prefix = self._say("calm") + " " if _ANGRY.search(extract.words(text)) else ""
        reply = await self._turn(u, now)
        if prefix and reply.text:
            reply.text = prefix + reply.text
        return reply

    async def silence(self) -> Reply:
        """The caller said nothing for `silence_s` after the agent spoke."""
        if self.ended:
            return Reply("")
        return self._miss(silent=True)

    def abandon(self) -> None:
        """The caller hung up."""
        if self.out.status == "open":
            self.out.status = "abandoned"
        self.state = "ended"

    # ---- the turn
    async def _turn(self, u: Understanding, now: datetime) -> Reply:  # noqa: PLR0911, PLR0912 - the states, in order of precedence
        if "opt_out" in u.intents:
            return self._finish("opt_out", "opted_out", self._say("opted_out"), "hangup")
        if "human" in u.intents:
            return self._handover(task="human")
        if self.state == "ask:spell":
            spelt = spelling.spelled_name(u.text)
            if spelt is None:
                return self._miss()
            self.out.slots["name"] = spelt
            self.heard_name = None
            self.misses = 0
            return await self._next(now)
        answer = self._facts(u)
        if self.state == "guess":
            if u.yes and self.guessed:
                u.intents.append(self.guessed)
            elif u.yes is False:
                self.state = "open"
                self.misses = 0
                return Reply(self._say("anything_else"))
        task = next((i for i in u.intents if i in COLLECTING), None)
        if task is None and self._books_by_day(u):
            task = "book"
        if task is not None and task != self.task and not self._is_answer(u):
            self._start(task)
        elif self.state in ("confirm", "offer") and u.yes is True and not self._new_info(u):
            return await self._agree(now)
        elif self.state in ("confirm", "offer") and u.yes is False and not self._new_info(u):
            self.state = "ask:change"
            self.misses = 0
            return Reply(self._say("what_change"))
        progressed = self._fill(u, now)
        if self.task is None:
            if answer:
                return self._answered(answer)
            if "question" in u.intents:
                # Not in the sheet (or off-topic): said so, and it counts as a failed attempt
                # (a caller whose questions we cannot answer needs a person).
                self.out.unanswered += 1
                self.out.task = self.out.task or "question"
                self.state = "anything_else"
                self.misses += 1
                if self.misses >= self.pb.max_attempts:
                    return self._handover()
                return Reply(self._say("not_in_sheet"))
            if self.state == "anything_else" and u.yes is False:
                return self._finish(self.out.task, self._final_status(), self._say("goodbye"),
                                    "hangup")  # fmt: skip
            if self.state == "anything_else" and u.yes is True:
                self.state = "open"
                self.misses = 0
                return Reply(self._say("anything_else"))
            if u.guessed:
                # Only the model understood something: asked back, and still a failed attempt
                # until the caller says yes (a guess from a tiny model is often wrong).
                self.misses += 1
                if self.misses >= self.pb.max_attempts:
                    return self._handover()
                self.guessed = u.guessed
                self.state = "guess"
                return Reply(self._say("guess", what=WHAT[u.guessed]))
            return self._miss(offtopic=len(u.text.split()) >= 4)
        if not progressed and not answer and task is None:
            return self._miss()
        self.misses = 0
        nxt = await self._next(now)
        text = f"{answer} {nxt.text}".strip() if answer else nxt.text
        return Reply(text, nxt.action)

    def _books_by_day(self, u: Understanding) -> bool:
        """A caller with no task yet who names a day ("…for Thursday at quarter past 9,
        please", the verb lost to the line) is booking, unless they ask about something else;
        a question naming a day and a clock time and nothing in the sheet ("Can I vote next
        Monday at 1pm?", "book" misheard) is booking too."""
        asks = u.question and u.when.at is None
        return (
            self.task is None and self.pb.handles("book") and u.when.day is not None
            and not u.facts and not asks and not (set(u.intents) - {"question"})
            and self.state in ("open", "anything_else", "guess")
        )  # fmt: skip

    def _is_answer(self, u: Understanding) -> bool:
        """A slot answer that happens to use a task word ("for a check-up" when asked the
        reason) does not restart the task."""
        return self.task is not None and self.state == "ask:reason"

    def _new_info(self, u: Understanding) -> bool:
        return not u.when.empty or u.name is not None or u.phone is not None

    def _start(self, task: str) -> None:
        kept = {k: v for k, v in self.out.slots.items() if k in ("name", "phone")}
        self.task = task
        self.out.task = task
        self.out.status = "open"
        self.out.slots = kept
        self.proposal = None
        self.state = "open"

    def _facts(self, u: Understanding) -> str:
        if not u.facts or (any(i in COLLECTING for i in u.intents) and not u.question):
            return ""  # "book a cleaning" names a service, it does not ask its price
        by_key = {f.key: f for f in self.pb.facts}
        said = []
        for key in u.facts[:2]:
            said.append(by_key[key].answer)
            if key not in self.out.answered:
                self.out.answered.append(key)
        return " ".join(self._checked(s) for s in said).strip()

    def _answered(self, answer: str) -> Reply:
        self.out.task = self.out.task or "question"
        if self.out.task == "question":
            self.out.status = "done"
            self._task_done()
        self.state = "anything_else"
        self.misses = 0
        return Reply(f"{answer} {self._say('anything_else')}")

    # ---- slots
    def _fill(self, u: Understanding, now: datetime) -> bool:
        """Merge what the caller said into the slots; True if anything new was learnt."""
        slots = self.out.slots
        asking = self.state.removeprefix("ask:") if self.state.startswith("ask:") else ""
        progressed = False
        name = u.name
        bare = u.when.empty and u.phone is None and u.yes is None and not u.intents
        if name is None and asking == "name" and spelling.looks_spelt(u.text):
            # Spelt straight away: nothing left to ask.
            spelt = spelling.spelled_name(u.text)
            if spelt is not None:
                progressed |= slots.get("name") != spelt
                slots["name"] = spelt
                self.heard_name = None
                return progressed
        if name is None and asking == "name" and bare:
            name = extract.bare_name(u.text)
        if name and self.pb.spell_names:
            # Heard, not yet known: asked for spelt next (see _next).
            if slots.get("name") != name:
                progressed |= name != self.heard_name
                self.heard_name = name
        elif name:
            progressed |= slots.get("name") != name
            slots["name"] = name
        phone = u.phone
        if phone == CALLER_ID:
            phone = self.caller
        if phone:
            progressed |= slots.get("phone") != phone
            slots["phone"] = phone
        if asking in ("message", "reason") and len(u.text.split()) >= 2:
            slots[asking] = u.text.strip()
            progressed = True
        if not u.when.empty and self.task in ("book", "cancel"):
            progressed |= self._set_when(u.when, now)
        return progressed

    def _set_when(self, when: When, now: datetime) -> bool:
        slots = self.out.slots
        changed = False
        if when.day is not None:
            # Another day keeps the time asked for ("no, Wednesday"): the calendar offers the
            # nearest free one if it is taken there.
            slots["date"] = when.day.isoformat()
            changed = True
        if when.at is not None:
            slots["time"] = say_time(when.at)
            slots.pop("part", None)
            changed = True
        elif when.part is not None:
            slots["part"] = when.part
            slots.pop("time", None)
            changed = True
        if changed:
            self.proposal = None
            if self.state in ("confirm", "offer", "ask:change"):
                self.state = "open"
        return changed

    def _missing(self) -> str | None:
        assert self.task is not None
        wanted = self.pb.slots.get(self.task, ())
        slots = self.out.slots
        for slot in _SLOT_ORDER:
            if slot not in wanted:
                continue
            if slot == "time" and ("part" in slots or self.proposal is not None):
                continue
            if slot not in slots:
                return slot
        return None

    async def _next(self, now: datetime) -> Reply:  # noqa: PLR0911 - one reply per missing piece
        """Ask for what is missing, or confirm what is complete."""
        assert self.task is not None
        slots = self.out.slots
        if self.heard_name is not None and "name" in self.pb.slots.get(self.task, ()):
            self.state = "ask:spell"
            return Reply(self._say("ask_spell"))
        if self.task in ("book", "cancel") and "date" in slots:
            day = date.fromisoformat(slots["date"])
            if self.task == "book" and (reply := await self._check_day(day, now)) is not None:
                return reply
        missing = self._missing()
        if missing == "phone" and self.caller and self.task != "message":
            slots["phone"] = self.caller
            missing = self._missing()
        if missing is not None:
            self.state = f"ask:{missing}"
            if missing == "time":
                return Reply(self._say("ask_time", day=say_day(date.fromisoformat(slots["date"]))))
            return Reply(self._say(f"ask_{missing}"))
        if self.task == "book":
            return await self._propose(now)
        if self.task == "cancel":
            self.state = "confirm"
            return Reply(
                self._say("confirm_cancel", day=say_day(date.fromisoformat(slots["date"])))
            )
        self.state = "confirm"
        return Reply(
            self._say(
                "confirm_message", name=slots.get("name", "you"),
                phone=_say_phone(slots.get("phone", "")),
            )
        )  # fmt: skip

    async def _check_day(self, day: date, now: datetime) -> Reply | None:
        slots = self.out.slots
        if not is_open(self.pb, day) or day < now.date():
            slots.pop("date", None)
            slots.pop("time", None)
            self.state = "ask:date"
            return Reply(self._say("closed", weekday=WEEKDAY_NAMES[day.weekday()].capitalize()))
        if not await self._free(day, now):
            slots.pop("date", None)
            self.state = "ask:date"
            return Reply(self._say("no_slots", day=say_day(day)))
        return None

    async def _free(self, day: date, now: datetime) -> list[datetime]:
        start, end = day_span(self.pb, day)
        busy = await self.calendar.busy(self.line, start, end)
        return free_slots(self.pb, day, busy, now)

    async def _propose(self, now: datetime) -> Reply:
        slots = self.out.slots
        day = date.fromisoformat(slots["date"])
        at = time.fromisoformat(slots["time"]) if "time" in slots else None
        slot, exact = choose(
            When(day=day, at=at, part=slots.get("part")), await self._free(day, now)
        )
        if slot is None:
            slots.pop("date", None)
            self.state = "ask:date"
            return Reply(self._say("no_slots", day=say_day(day)))
        self.proposal = slot
        self.out.offered.append(say_time(slot.time()))
        if not exact:
            self.state = "offer"
            return Reply(self._say("offer", day=say_day(day), time=say_time(slot.time())))
        return self._confirm_booking()

    def _confirm_booking(self) -> Reply:
        assert self.proposal is not None
        self.state = "confirm"
        slot = self.proposal
        return Reply(
            self._say(
                "confirm_book", name=self.out.slots.get("name", "you"),
                day=say_day(slot.date()), time=say_time(slot.time()),
            )
        )  # fmt: skip

    async def _agree(self, now: datetime) -> Reply:  # noqa: PLR0911 - one per confirmable state
        self.misses = 0
        slots = self.out.slots
        if self.state == "offer" and self.proposal is not None:
            slots["time"] = say_time(self.proposal.time())
            slots.pop("part", None)
            missing = self._missing()
            if missing is not None:
                self.state = f"ask:{missing}"
                return Reply(self._say(f"ask_{missing}"))
            return self._confirm_booking()
        if self.task == "book" and self.proposal is not None:
            slot = self.proposal
            details: dict[str, Any] = {
                k: slots[k] for k in ("name", "phone", "reason") if k in slots
            }
            booked = await self.calendar.book(
                self.line, slot, slot + timedelta(minutes=self.pb.slot_minutes),
                call_id=self.call_id, details=details, caller=self.caller,
            )  # fmt: skip
            if booked is None:
                slots.pop("time", None)
                self.proposal = None
                self.state = "ask:time"
                return Reply(self._say("taken"))
            slots["date"] = slot.date().isoformat()
            slots["time"] = say_time(slot.time())
            slots.pop("part", None)
            self.out.booking_id = booked
            self._done()
            return Reply(self._say("booked", day=say_day(slot.date()), time=say_time(slot.time())))
        if self.task == "cancel":
            day = date.fromisoformat(slots["date"])
            found = await self.calendar.cancel(
                self.line, day, {k: slots[k] for k in ("name", "phone") if k in slots}
            )
            if found is None:
                return self._handover(self._say("no_booking", day=say_day(day)))
            self.out.cancelled_id = found
            self._done()
            return Reply(self._say("cancelled", day=say_day(day)))
        self._done()
        return Reply(self._say("message_taken"))

    def _done(self) -> None:
        self.out.status = "done"
        self._task_done()
        self.task = None
        self.proposal = None
        self.state = "anything_else"

    def _task_done(self) -> None:
        if self.out.task_turns is None:
            self.out.task_turns = self.out.turns

    def _final_status(self) -> str:
        return "done" if self.out.status in ("done", "open") and self.out.task else self.out.status

    # ---- failures, hand-over, end
    def _miss(self, *, silent: bool = False, offtopic: bool = False) -> Reply:
        self.misses += 1
        if self.misses >= self.pb.max_attempts:
            return self._handover()
        if silent:
            return Reply(self._say("still_there"))
        if offtopic and self.task is None:
            return Reply(self._say("offtopic", business=self.pb.business))
        if self.state == "ask:name" and self.pb.spell_names and not silent:
            # Words that are no name: a receptionist asks for it spelt rather than again.
            self.state = "ask:spell"
            return Reply(f"{self._say('fallback_name')} {self._say('ask_spell')}")
        repeat = self._repeat()
        return Reply(f"{self._say('fallback')} {repeat}".strip())

    def _repeat(self) -> str:
        """The pending question again, after a turn that did not answer it."""
        if self.state.startswith("ask:"):
            slot = self.state.removeprefix("ask:")
            if slot == "time" and "date" in self.out.slots:
                return self._say(
                    "ask_time", day=say_day(date.fromisoformat(self.out.slots["date"]))
                )
            if slot != "change":
                return self._say(f"ask_{slot}")
        return ""

    def _handover(self, said: str = "", *, task: str | None = None) -> Reply:
        """To a person: asked for (`task` "human"), or after failed attempts (the call keeps
        the task it was on)."""
        task = task or self.out.task or "human"
        if self.can_transfer:
            text = f"{said} {self._say('handover')}".strip() if said else self._say("handover")
            return self._finish(task, "transferred", text, "transfer")
        return self._finish(task, "abandoned", self._say("handover_none"), "hangup")

    def _finish(self, task: str, status: str, text: str, action: Action) -> Reply:
        self.out.task = task
        self.out.status = status
        self._task_done()
        self.state = "ended"
        return Reply(text, action)

    # ---- speech
    def _say(self, key: str, **values: str) -> str:
        collected = [*self.out.slots.values(), *self.out.offered]
        return self.speaker.say(key, values, collected)

    def _checked(self, text: str) -> str:
        return self.speaker.quote(text, [*self.out.slots.values(), *self.out.offered])


def _e164(raw: str, region: str) -> str | None:
    try:
        num = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(num):
        return None
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)


def _say_phone(e164: str) -> str:
    """The number as the caller would write it (national format)."""
    try:
        num = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.NATIONAL)
