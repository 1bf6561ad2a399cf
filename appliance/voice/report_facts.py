"""The deterministic pre-pass of the post-call report: what the caller's own words say for sure.

Weekdays, dates, times of day, phone numbers (`phonenumbers`), e-mail addresses, a name the
caller introduced themselves with, and an opt-out request are found with rules that either
match the words or do not. The LLM's report is checked against these facts (a value the
transcript does not support is dropped) and gaps it left are filled from them, because the CPU
model (SmolLM2-135M) writes fluent JSON but invents numbers, addresses and dates.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import phonenumbers

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# English and Swedish day names (the two languages a line ships or can be configured with).
_DAY_WORDS = {
    **{d.lower(): d for d in WEEKDAYS},
    "måndag": "Monday",
    "tisdag": "Tuesday",
    "onsdag": "Wednesday",
    "torsdag": "Thursday",
    "fredag": "Friday",
    "lördag": "Saturday",
    "söndag": "Sunday",
}
_DAY = re.compile(r"\b(" + "|".join(_DAY_WORDS) + r")(?:s|en|ar)?\b", re.IGNORECASE)
_MONTH_NAMES = (
    "january", "february", "march", "april", "may", "june", "july", "august", "september",
    "october", "november", "december",
)  # fmt: skip
_MONTHS = {m: i + 1 for i, m in enumerate(_MONTH_NAMES)}
_MONTH_ALT = "|".join(_MONTHS)
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_DAY_MONTH = re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?(?: of)? ({_MONTH_ALT})\b", re.IGNORECASE)
_MONTH_DAY = re.compile(rf"\b({_MONTH_ALT}) (?:the )?(\d{{1,2}})(?:st|nd|rd|th)?\b", re.IGNORECASE)
_RELATIVE = re.compile(r"\b(today|tomorrow|day after tomorrow)\b", re.IGNORECASE)
_CLOCK = re.compile(
    r"\b([01]?\d|2[0-3])[:.]([0-5]\d)\s*(a\.?m\.?|p\.?m\.?)?(?![\d])", re.IGNORECASE
)
_HOUR_AMPM = re.compile(r"\b(1[0-2]|0?[1-9])\s*(a\.?m\.?|p\.?m\.?)(?![a-z])", re.IGNORECASE)
_OCLOCK = re.compile(r"\b(1[0-2]|0?[1-9]) o'?clock\b", re.IGNORECASE)
_PERIODS = {
    "morning": "morning",
    "noon": "noon",
    "midday": "noon",
    "lunchtime": "noon",
    "afternoon": "afternoon",
    "evening": "evening",
    "förmiddag": "morning",
    "morgon": "morning",
    "lunch": "noon",
    "eftermiddag": "afternoon",
    "kväll": "evening",
}
_PERIOD = re.compile(r"\b(" + "|".join(_PERIODS) + r")(?:en)?\b", re.IGNORECASE)
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# How an e-mail address sounds once transcribed: "anna dot berg at example dot com".
_SPOKEN_EMAIL = re.compile(
    r"\b([a-z0-9]+(?: dot [a-z0-9]+)*) at ([a-z0-9-]+(?: dot [a-z0-9-]+)+)\b", re.IGNORECASE
)
_NAME_CUE = re.compile(
    r"\b(?:my name is|my name's|name is|this is|i am|i'm|it's|jag heter|det är)\s+",
    re.IGNORECASE,
)
_NAME_WORD = re.compile(r"[A-ZÅÄÖÉ][a-zåäöéü'-]+")
# Capitalised words that follow "this is" / "I'm" without being names.
_NOT_NAMES = frozenset(
    {
        "a", "an", "the", "just", "calling", "about", "here", "not", "very", "really", "so",
        "sorry", "hello", "hi", "yes", "no", "please", "thanks", "thank", "okay", "ok", "well",
        "interested", "looking", "trying", "wondering", "urgent", "fine", "good", "great",
        *(d.lower() for d in WEEKDAYS), *_MONTHS,
    }
)  # fmt: skip
_OPT_OUT = re.compile(
    r"\b(?:(?:do not|don't|dont|never) (?:call|contact|ring|phone) (?:me|us)"
    r"|stop (?:calling|contacting|ringing)|(?:remove|delete|take) (?:me|my number|my details)"
    r"|opt(?: |-)?out|unsubscribe|no more calls|not call me again"
    r"|ring inte|ringa inte|sluta ringa)\b",
    re.IGNORECASE,
)
MIN_SENTENCE_WORDS = 3
_COMMIT = re.compile(
    r"\b(?:will|'ll|shall|going to|call (?:you|me|them) back|get back|confirm|send|schedule"
    r"|återkommer|ringer)\b",
    re.IGNORECASE,
)
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


@dataclass(frozen=True)
class Turn:
    """One stretch of speech in the transcript. `speaker`: caller, agent/callee, or mixed
    (a mixed-leg transcript cannot tell the two apart)."""

    speaker: str
    start: float
    text: str
    language: str = ""


@dataclass(frozen=True)
class Facts:
    days: tuple[str, ...]
    """Weekdays the caller named (canonical English names), in order of first mention."""
    dates: tuple[str, ...]
    """ISO dates the caller named, relative ones (today, tomorrow) resolved to the call's day."""
    times: tuple[str, ...]
    """HH:MM (24 h) and parts of the day (morning, noon, afternoon, evening)."""
    phones: tuple[str, ...]
    """E.164 numbers the caller said."""
    emails: tuple[str, ...]
    names: tuple[str, ...]
    """Names the caller introduced themselves with ("my name is Anna Berg")."""
    opt_out: bool
    language: str | None
    caller_words: frozenset[str]
    """Lower-case words the caller said (every word when speakers are not separated)."""
    all_words: frozenset[str]
    caller_text: str
    caller_sentences: tuple[str, ...] = ()
    """The caller's sentences (of three words or more) other than ones that only say who
    they are (name, number, address: those have fields of their own), as said."""
    commitments: tuple[str, ...] = ()
    """Sentences, either speaker's, in which someone undertakes to do something next."""
    sentences: tuple[str, ...] = ()
    """Every speaker's sentences (of three words or more), as said."""


def caller_turns(turns: Sequence[Turn]) -> list[Turn]:
    """The caller's turns; every turn when the transcript does not separate the speakers."""
    own = [t for t in turns if t.speaker == "caller"]
    return own if own else list(turns)


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def sentences(text: str) -> list[str]:
    """Sentences of three words or more; punctuation inside numbers ("2.30") does not end one."""
    parts = re.split(r"(?<=[.!?])\s+|\n+", text)
    return [p.strip() for p in parts if len(_WORD.findall(p)) >= MIN_SENTENCE_WORDS]


def _identity(sentence: str, region: str) -> bool:
    return bool(_NAME_CUE.search(sentence) or phones(sentence, region) or emails(sentence))


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def weekdays(text: str) -> list[str]:
    return [_DAY_WORDS[m.group(1).lower()] for m in _DAY.finditer(text)]


def _next_date(day: int, month: int, today: date) -> date | None:
    for year in (today.year, today.year + 1):
        try:
            d = date(year, month, day)
        except ValueError:
            return None
        if d >= today:
            return d
    return None


def dates(text: str, today: date) -> list[str]:
    found: list[tuple[int, str]] = []
    for m in _ISO_DATE.finditer(text):
        try:
            found.append((m.start(), date(*map(int, m.groups())).isoformat()))
        except ValueError:
            continue
    for m in _DAY_MONTH.finditer(text):
        d = _next_date(int(m.group(1)), _MONTHS[m.group(2).lower()], today)
        if d:
            found.append((m.start(), d.isoformat()))
    for m in _MONTH_DAY.finditer(text):
        d = _next_date(int(m.group(2)), _MONTHS[m.group(1).lower()], today)
        if d:
            found.append((m.start(), d.isoformat()))
    for m in _RELATIVE.finditer(text):
        offset = {"today": 0, "tomorrow": 1, "day after tomorrow": 2}[m.group(1).lower()]
        found.append((m.start(), (today + timedelta(days=offset)).isoformat()))
    return [iso for _, iso in sorted(found)]


def _hour24(hour: int, ampm: str | None) -> int:
    if not ampm:
        return hour
    pm = ampm.lower().startswith("p")
    return (hour % 12) + (12 if pm else 0)


def times(text: str) -> list[str]:
    found: list[tuple[int, str]] = []
    for m in _CLOCK.finditer(text):
        hour = _hour24(int(m.group(1)), m.group(3))
        found.append((m.start(), f"{hour:02d}:{m.group(2)}"))
    taken = {start for start, _ in found}
    for m in _HOUR_AMPM.finditer(text):
        if m.start() not in taken:
            found.append((m.start(), f"{_hour24(int(m.group(1)), m.group(2)):02d}:00"))
    for m in _OCLOCK.finditer(text):
        found.append((m.start(), f"{int(m.group(1)):02d}:00"))
    for m in _PERIOD.finditer(text):
        found.append((m.start(), _PERIODS[m.group(1).lower()]))
    return [t for _, t in sorted(found)]


def phones(text: str, region: str) -> list[str]:
    return [
        phonenumbers.format_number(m.number, phonenumbers.PhoneNumberFormat.E164)
        for m in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID)
    ]


def phone_e164(value: str, region: str) -> str | None:
    """`value` as E.164 if it is one valid number, else None."""
    try:
        parsed = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def emails(text: str) -> list[str]:
    out = [m.group(0).lower().rstrip(".") for m in _EMAIL.finditer(text)]
    for m in _SPOKEN_EMAIL.finditer(text):
        local = m.group(1).lower().replace(" dot ", ".")
        domain = m.group(2).lower().replace(" dot ", ".")
        out.append(f"{local}@{domain}")
    return out


def names(text: str) -> list[str]:
    out = []
    for cue in _NAME_CUE.finditer(text):
        parts: list[str] = []
        rest = text[cue.end() :]
        for token in rest.split()[:3]:
            word = token.strip(',.;:!?"')
            if not _NAME_WORD.fullmatch(word) or word.lower() in _NOT_NAMES:
                break
            parts.append(word)
            if word != token:  # punctuation ends the name
                break
        if parts:
            out.append(" ".join(parts))
    return out


def extract(turns: Sequence[Turn], *, region: str, started_at: float) -> Facts:
    """The facts of a call's transcript; `started_at` anchors "today" and "tomorrow"."""
    own = caller_turns(turns)
    text = "\n".join(t.text for t in own)
    everything = "\n".join(t.text for t in turns)
    langs = [t.language for t in own if t.language] or [t.language for t in turns if t.language]
    return Facts(
        days=_unique(weekdays(text)),
        dates=_unique(dates(text, datetime.fromtimestamp(started_at).date())),
        times=_unique(times(text)),
        phones=_unique(phones(text, region)),
        emails=_unique(emails(text)),
        names=_unique(names(text)),
        opt_out=_OPT_OUT.search(text) is not None,
        language=max(set(langs), key=langs.count) if langs else None,
        caller_words=frozenset(words(text)),
        all_words=frozenset(words(everything)),
        caller_text=text,
        caller_sentences=_unique(s for s in sentences(text) if not _identity(s, region)),
        commitments=_unique(s for t in turns for s in sentences(t.text) if _COMMIT.search(s)),
        sentences=_unique(s for t in turns for s in sentences(t.text)),
    )
