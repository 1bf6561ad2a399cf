"""What the caller's words mean to the playbook: intents, slot values, yes/no, facts asked about.

Rules first (regular expressions, phonenumbers, the date grammar of `dates`): they are exact
where callers are predictable, which is most of a receptionist's calls. The LLM is asked only
when the rules find no intent at all, and only through llama.cpp's grammar-constrained output
(a JSON object whose `intent` is one of the line's tasks or "other"), so even a 135M model
cannot answer with anything else; the engine then *confirms* a model-guessed intent with the
caller before acting on it, because a guess from a model that small is often wrong.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, cast

import phonenumbers

from appliance.voice.dialogue.dates import MONTH_NAMES, WEEKDAY_NAMES, When, parse_when
from appliance.voice.dialogue.playbook import PlaybookConfig

log = logging.getLogger(__name__)

CALLER_ID = "caller-id"
"""Phone slot value meaning "the number I am calling from" (resolved by the engine)."""

_OPT_OUT = re.compile(
    r"\b(stop (calling|ringing|contacting)|don'?t (ever )?(call|ring|contact) (me|us)"
    r"|do not (call|contact)|never (call|ring)|remove (me|my number)|take (me|my number) off"
    r"|unsubscribe|do not call list|no more calls)\b"
)
_HUMAN = re.compile(
    r"\b(human|real person|a person|someone real|somebody real|operator|manager|receptionist"
    r"|staff member|colleague|an actual person|put me through|transfer me|connect me)\b"
)
_HUMAN_ASK = re.compile(r"\b(speak|talk|transfer|connect|put me through|get me|want|need)\b")
_CANCEL = re.compile(r"\b(cancel|call off|can'?t (make|come)|won'?t be able to (make|come))\b")
_BOOK = re.compile(
    r"\b(book|booking|appointment|schedule|reserve|come in|see (the |a )?(dentist|doctor|hygienist)"
    r"|free (time|slot)|available (time|slot)|slot|get in|(put|fit|squeeze) me in)\b"
)
_MESSAGE = re.compile(
    r"\b(leave a message|take a message|pass (it |this )?on|message for|call me back"
    r"|ring me back|have (her|him|them|someone) call)\b"
)
_QUESTION = re.compile(
    r"\?|\b(what|when|where|who|how|which|do you|are you|is it|is there|can i|could you tell)\b"
)
_YES = re.compile(
    r"^(yes|yeah|yep|yup|sure|correct|right|that'?s (right|correct|fine|perfect|great)|perfect"
    r"|great|ok|okay|fine|sounds good|please do|go ahead|absolutely|exactly|lovely)\b"
)
_DONE = re.compile(
    r"\b(that'?s (all|it|everything)|nothing (else|more)|no more|(good)?bye|all good|i'?m good)\b"
)
_NO = re.compile(r"^(no|nope|nah|not really|wrong|that'?s (wrong|not right)|actually)\b|\bno\b")
_NAME_INTRO = re.compile(
    r"\b(?i:my name is|my name'?s|name is|this is|i am|i'?m|it'?s|it is|call me)\s+"
    r"([A-ZÀ-Ý][^\W\d_]*(?:['\-][^\W\d_]+)?(?:\s+[A-ZÀ-Ý][^\W\d_]*(?:['\-][^\W\d_]+)?){0,2})"
)
_NOT_NAMES = {
    *(w.capitalize() for w in WEEKDAY_NAMES),
    *(m.capitalize() for m in MONTH_NAMES),
    "I", "Yes", "No", "Okay", "Ok", "Hi", "Hello", "Thanks", "Thank", "Please", "Calling",
    "Just", "Not", "Sorry", "Fine", "Good", "Great", "The", "A", "An", "Really",
    # What Whisper writes for a hum or an "err" on the phone (measured): no one's name.
    "Hmm", "Hm", "Mm", "Mhm", "Um", "Uh", "Er", "Erm", "Em", "Eh", "Oh", "Ah", "Huh", "Damn",
    "Them", "Then", "There", "Here", "Done", "Amen", "Yeah", "Yep",
}  # fmt: skip
_FILLER = re.compile(
    r"\b(uh+|um+|er+|hmm+|well|so|yes|yeah|sure|ok|okay|it'?s|it is|my name is|my name'?s"
    r"|this is|i'?m|i am|name is|the name is|please|thanks|thank you)\b",
    re.IGNORECASE,
)
_DIGITS = {
    "zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9",
}  # fmt: skip
_THIS_NUMBER = re.compile(
    r"\b(this number|the number i'?m calling (from|on)|same number|number i'?m on|my caller id)\b"
)


@dataclass
class Understanding:
    text: str
    intents: list[str] = field(default_factory=list)
    """Matched by rules, strongest first (opt-out and human beat everything)."""
    yes: bool | None = None
    name: str | None = None
    phone: str | None = None
    when: When = field(default_factory=When)
    facts: list[str] = field(default_factory=list)
    """Keys of the sheet's facts the caller asked about."""
    question: bool = False
    guessed: str | None = None
    """Intent the constrained LLM chose when the rules found none."""

    @property
    def empty(self) -> bool:
        return (
            not self.intents and self.yes is None and self.name is None and self.phone is None
            and self.when.empty and not self.facts and self.guessed is None
        )  # fmt: skip


def words(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("\u2019", "'")).split())


def understand(text: str, playbook: PlaybookConfig, now: datetime, region: str) -> Understanding:
    """Everything the rules can read from one caller turn."""
    w = words(text)
    u = Understanding(text=text)
    if _OPT_OUT.search(w):
        u.intents.append("opt_out")
    if _HUMAN.search(w) and _HUMAN_ASK.search(w):
        u.intents.append("human")
    if _CANCEL.search(w):
        u.intents.append("cancel")
    if _BOOK.search(w) and "cancel" not in u.intents:
        u.intents.append("book")
    if _MESSAGE.search(w):
        u.intents.append("message")
    u.facts = match_facts(w, playbook)
    u.question = bool(_QUESTION.search(text.lower()) or _QUESTION.search(w))
    if u.facts or (u.question and not u.intents):
        u.intents.append("question")
    u.intents = [i for i in u.intents if playbook.handles(i)]
    if _DONE.search(w):
        u.yes = False  # "okay, that's all": the caller is done, whatever word came first
    elif _YES.search(w):
        u.yes = True
    elif _NO.search(w):
        u.yes = False
    u.name = name_in(text)
    u.phone = phone_in(text, region)
    u.when = parse_when(text, now)
    return u


def match_facts(w: str, playbook: PlaybookConfig) -> list[str]:
    scored: list[tuple[int, int, str]] = []
    for i, fact in enumerate(playbook.facts):
        hits = sum(1 for k in fact.keywords if re.search(rf"\b{re.escape(k)}\b", w))
        if hits:
            scored.append((-hits, i, fact.key))
    return [key for _, _, key in sorted(scored)]


def name_in(text: str) -> str | None:
    """A name the caller introduced themselves with ("my name is Anna Berg")."""
    for m in _NAME_INTRO.finditer(text):
        parts = [p for p in m[1].split() if p not in _NOT_NAMES]
        # Stop at the first word that is not a name ("Anna Berg Tuesday" → "Anna Berg").
        kept: list[str] = []
        for p in m[1].split():
            if p in _NOT_NAMES:
                break
            kept.append(p)
        if kept and parts:
            return " ".join(kept)
    return None


def bare_name(text: str) -> str | None:
    """The answer to "what is your name?": the words left after fillers, if they look like a
    name (one to three words, letters only)."""
    if found := name_in(text):
        return found
    rest = _FILLER.sub(" ", re.sub(r"[^\w'\- ]+|[\d_]+", " ", text)).split()
    rest = [r for r in rest if r.capitalize() not in _NOT_NAMES]
    # Names are written capitalised (by the caller, and by Whisper): "done." for a hum is not.
    if 1 <= len(rest) <= 3 and all(len(r) > 1 and r[0].isupper() for r in rest):
        return " ".join(r[:1].upper() + r[1:] for r in rest)
    return None


def phone_in(text: str, region: str) -> str | None:
    """A phone number in E.164, digits said as words included ("oh seven oh, one two…");
    CALLER_ID for "this number"."""
    if _THIS_NUMBER.search(words(text)):
        return CALLER_ID
    tokens = re.sub(r"[^a-z0-9+ ]+", " ", text.lower()).split()
    spoken: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok in {"double", "triple"} and i + 1 < len(tokens) and tokens[i + 1] in _DIGITS:
            spoken.append(_DIGITS[tokens[i + 1]] * (2 if tok == "double" else 3))
            i += 2
            continue
        if tok == "plus":
            spoken.append("+")
        else:
            spoken.append(_DIGITS.get(tok, tok))
        i += 1
    joined = re.sub(r"(?<=[\d+])\s+(?=\d)", "", " ".join(spoken))
    for candidate in (text, joined):
        for match in phonenumbers.PhoneNumberMatcher(candidate, region):
            if phonenumbers.is_valid_number(match.number):
                return phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)
    return None


class IntentModel(Protocol):
    """The LLM's one job here: choose an intent for words the rules did not understand."""

    def classify(self, text: str, intents: tuple[str, ...]) -> str | None: ...


_DESCRIBE = {
    "book": "book an appointment",
    "cancel": "cancel an appointment",
    "message": "leave a message",
    "question": "ask a question",
    "human": "talk to a person",
    "opt_out": "stop being called",
}


class LlamaIntent:
    """Grammar-constrained intent choice with a llama.cpp model (`Llama`, or anything with its
    `create_chat_completion(messages=…, grammar=…)`). One completion at a time per model."""

    def __init__(self, llama: Any) -> None:
        self.llama = llama
        self._lock = threading.Lock()
        self._grammars: dict[tuple[str, ...], Any] = {}

    def _grammar(self, options: tuple[str, ...]) -> Any:
        """GBNF for exactly `{"intent": "<one of options>"}`: the JSON schema
        {"intent": {"enum": options}} with no optional whitespace, so the model spends its few
        tokens on the choice (llama.cpp's schema converter allows spaces it would sample)."""
        from llama_cpp.llama_grammar import LlamaGrammar

        if options not in self._grammars:
            choice = " | ".join(json.dumps(o) for o in options)
            rule = f'root ::= "{{\\"intent\\": \\"" ({choice}) "\\"}}"'
            self._grammars[options] = LlamaGrammar.from_string(rule, verbose=False)
        return self._grammars[options]

    def classify(self, text: str, intents: tuple[str, ...]) -> str | None:
        options = (*intents, "other")
        listing = "; ".join(f"{i} = {_DESCRIBE.get(i, i)}" for i in intents)
        messages = [
            {
                "role": "system",
                "content": "Classify what a caller to a business wants. Answer with JSON. "
                f"Intents: {listing}; other = anything else.",
            },
            {"role": "user", "content": "Caller: I'd like to come in for a cleaning."},
            {"role": "assistant", "content": '{"intent": "book"}'},
            {"role": "user", "content": "Caller: uh, hmm"},
            {"role": "assistant", "content": '{"intent": "other"}'},
            {"role": "user", "content": f"Caller: {text.strip()[:300]}"},
        ]
        try:
            with self._lock:
                out: Any = self.llama.create_chat_completion(
                    messages=cast(Any, messages),
                    grammar=self._grammar(options),
                    temperature=0.0,
                    max_tokens=24,
                )
            intent = json.loads(out["choices"][0]["message"]["content"] or "{}").get("intent")
        except (ValueError, RuntimeError, KeyError) as exc:
            log.warning("intent model failed (%s): the rules' answer stands", type(exc).__name__)
            return None
        return intent if intent in intents else None
