"""What the agent says: templates per state, and the checker every sentence passes before it
is spoken.

The checker reads the *claims* of a sentence — numbers and times (digits or words), weekday and
month names, capitalised words that are not the sentence's first (names) — and lets it through
only if each claim also appears in the facts sheet or in the values collected on this call.
Templates only ever insert those, so they pass by construction; the check is what makes an
optional rephrasing by a bigger model safe (a sentence that fails is never spoken: the template
is). The same checker counts `dialogue_invented_facts` in the bench over every agent turn.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from appliance.voice.dialogue.dates import MONTH_NAMES, WEEKDAY_NAMES, normalise

TEMPLATES: dict[str, str] = {
    "greeting": "Hello, you have reached {business}. How can I help?",
    "ask_name": "May I have your name, please?",
    "ask_spell": "Could you spell your name for me, please, with words like alfa, bravo, charlie?",
    "fallback_name": "Sorry, I did not catch your name.",
    "ask_phone": "What number can we call you back on?",
    "ask_date": "Which day would suit you?",
    "ask_time": "What time would suit you on {day}?",
    "ask_message": "What would you like me to pass on?",
    "ask_reason": "What is the appointment for?",
    "closed": "Sorry, we are closed on {weekday}. Which other day would suit you?",
    "no_slots": "Sorry, there is no free time on {day}. Which other day would suit you?",
    "offer": "The nearest free time on {day} is {time}. Would that suit you?",
    "confirm_book": "Let me check: an appointment for {name} on {day} at {time}. Is that right?",
    "booked": "You are booked on {day} at {time}. Is there anything else?",
    "taken": "Sorry, that time was just taken. Which other time would suit you?",
    "confirm_cancel": "You would like to cancel your appointment on {day}. Is that right?",
    "cancelled": "Your appointment on {day} is cancelled. Is there anything else?",
    "no_booking": "Sorry, I cannot find an appointment for you on {day}. "
    "I will pass you to a colleague.",
    "confirm_message": "Let me check: a message from {name}, to call back on {phone}. "
    "Is that right?",
    "message_taken": "Thank you, I will pass your message on. Is there anything else?",
    "what_change": "Sorry about that. What should I change?",
    "not_in_sheet": "Sorry, I do not have that information. "
    "I can take a message for a colleague, or help with an appointment.",
    "fallback": "Sorry, I did not catch that. Could you say it again?",
    "offtopic": "I can help with appointments, messages and questions about {business}.",
    "guess": "Just to check: would you like to {what}?",
    "still_there": "Are you still there?",
    "handover": "Let me put you through to a colleague.",
    "handover_none": "I am sorry I could not help. Please call again later. Goodbye.",
    "opted_out": "Understood. We will not call you again. Goodbye.",
    "anything_else": "Is there anything else I can help with?",
    "goodbye": "Thank you for calling. Goodbye.",
    "calm": "I am sorry for the trouble.",
}
WHAT = {
    "book": "book an appointment",
    "cancel": "cancel an appointment",
    "message": "leave a message",
    "question": "ask a question",
}

_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_NUMBER = re.compile(r"\d+")
_CAP = re.compile(r"\b[A-Z][a-zA-Z'\-]*\b")
_NAMES = {*WEEKDAY_NAMES, *MONTH_NAMES}
_SAFE_CAPS = {"i"}


def claims(sentence: str) -> set[str]:
    """Numbers, day and month names, and names a sentence states."""
    out: set[str] = set()
    text = normalise(sentence)
    out.update(_NUMBER.findall(text))
    for m in re.finditer(r"[a-z]+", text):
        word = m[0]
        # "May I…" is a verb; the month "May" comes with a day number next to it.
        near_number = re.search(r"\d\S*\s+(of\s+)?$", text[: m.start()]) or re.match(
            r"\s+(the\s+)?\d", text[m.end() :]
        )
        if word in _NAMES and (word != "may" or near_number):
            out.add(word)
    first = True
    for m in re.finditer(r"[A-Za-z][A-Za-z'\-]*|[.!?]", sentence):
        token = m[0]
        if token in {".", "!", "?"}:
            first = True
            continue
        if not first and _CAP.fullmatch(token) and token.lower() not in _SAFE_CAPS:
            out.add(token.lower())
        first = False
    return out


def allowed(sources: Iterable[str]) -> set[str]:
    """Every claim the sources make, plus each word of them (a name said after "the" in the
    sheet may be said at a sentence start by a template)."""
    out: set[str] = set()
    for text in sources:
        out |= claims(text)
        out |= {w.lower() for w in re.findall(r"[A-Za-z][A-Za-z'\-]*", text)}
        out |= set(_NUMBER.findall(normalise(text)))
    return out


def invented(sentence: str, ok: set[str]) -> set[str]:
    """Claims of `sentence` that nothing allowed supports (empty: it may be spoken)."""
    return {c for c in claims(sentence) if c not in ok}


def sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE.split(text.strip()) if s]


@dataclass
class Speaker:
    """Renders templates and guards everything said with the checker."""

    sheet: str
    """The facts sheet's text (business name and every fact's answer)."""
    rephrase: Callable[[str], str] | None = None
    """Optional freer phrasing (a bigger model); its output is checked, the template is the
    fallback."""
    blocked: int = 0
    """Sentences the checker stopped (never spoken)."""

    def say(self, key: str, values: dict[str, str], collected: Iterable[str] = ()) -> str:
        text = TEMPLATES[key].format(**values)
        ok = allowed([self.sheet, *values.values(), *collected])
        if self.rephrase is not None:
            candidate = self.rephrase(text)
            if candidate and all(not invented(s, ok) for s in sentences(candidate)):
                return candidate
            self.blocked += 1
        kept = [s for s in sentences(text) if not invented(s, ok)]
        self.blocked += len(sentences(text)) - len(kept)
        return " ".join(kept) if kept else TEMPLATES["fallback"]

    def quote(self, text: str, collected: Iterable[str] = ()) -> str:
        """Text from outside the templates (a fact's answer, the line's greeting), kept only
        in the sentences the sheet and the collected values support."""
        ok = allowed([self.sheet, *collected])
        kept = [s for s in sentences(text) if not invented(s, ok)]
        self.blocked += len(sentences(text)) - len(kept)
        return " ".join(kept)
