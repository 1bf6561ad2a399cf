"""Keeping the LLM's report to what the call said.

Two halves, both driven by field names and the line's JSON schema:

* `narrow` turns the line's schema into the *generation* schema the grammar is built from:
  fields the pre-pass knows (name, phone, e-mail, day, date, time, language, opt-out) may only
  take a value the caller said (or null), and free-text strings may only use words of the
  transcript. A report that follows the grammar still validates against the line's schema.
* `ground` checks a parsed report against the facts afterwards (the grammar may be unavailable,
  and a model may choose null where the caller was clear): an unsupported value is nulled, a
  gap the facts fill unambiguously is filled. Notes name the field path and the rule, never
  the value, so they can be stored in the clear.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from jsonschema import validators

from appliance.voice import report_facts as rf
from appliance.voice.report_facts import Facts

# Field names the pre-pass has facts for, wherever they appear in a schema.
KINDS = {
    "caller_name": "name",
    "name": "name",
    "phone": "phone",
    "phone_number": "phone",
    "email": "email",
    "day": "day",
    "weekday": "day",
    "date": "date",
    "time": "time",
    "opt_out": "opt_out",
    "language": "language",
}
# Free-text fields about what the caller wants: drawn from the caller's sentences; about what
# happens next: from sentences in which someone undertakes something.
CALLER_TEXT = frozenset({"need", "request", "reason"})
NEXT_TEXT = frozenset({"follow_up", "next_step", "next_steps", "action"})
# Words a summary may use without the caller having said them.
GLUE = frozenset(
    ("a", "an", "the", "to", "for", "of", "and", "or", "on", "in", "at", "with", "by", "about",
     "from", "into", "is", "are", "was", "be", "been", "has", "have", "had", "it", "its", "this",
     "that", "these", "those", "they", "them", "their", "he", "she", "his", "her", "him", "you",
     "your", "we", "our", "us", "i", "me", "my", "not", "no", "yes", "wants", "wanted", "would",
     "like", "likes", "asks", "asked", "needs", "needed", "caller", "call", "calls", "back",
     "will", "can", "could", "should", "please", "new", "next", "some", "any", "more")
)  # fmt: skip
_BOOKING = re.compile(
    r"\b(appointment|book|booking|reserve|slot|come in|visit|see (?:the|a) |boka|tid)\w*",
    re.IGNORECASE,
)
MIN_GROUNDED_SHARE = 0.5


@dataclass
class Grounding:
    report: Any
    nulled: list[str] = field(default_factory=list)
    """Paths whose value the transcript does not support (the value itself is not kept)."""
    filled: list[str] = field(default_factory=list)
    """Paths the facts filled (the model left them null or got them wrong)."""


# ---- schema walking
def _resolve(root: dict[str, Any], sub: Any) -> Any:
    """Follow local `$ref`s ("#/$defs/x"); anything else is returned as is."""
    seen = 0
    while isinstance(sub, dict) and "$ref" in sub and seen < 16:
        ref = str(sub["$ref"])
        if not ref.startswith("#/"):
            return sub
        node: Any = root
        for part in ref[2:].split("/"):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        sub, seen = node, seen + 1
    return sub


def _branches(root: dict[str, Any], sub: Any) -> list[dict[str, Any]]:
    sub = _resolve(root, sub)
    if not isinstance(sub, dict):
        return []
    options = sub.get("anyOf") or sub.get("oneOf")
    if options:
        return [b for o in options for b in _branches(root, o)]
    return [sub]


def _accepts(root: dict[str, Any], sub: Any, value: Any) -> bool:
    """Whether `value` validates against the subschema `sub` (refs resolved against `root`)."""
    if not isinstance(sub, dict):
        return True
    schema = dict(sub)
    for key in ("$defs", "definitions"):
        if key in root and key not in schema:
            schema[key] = root[key]
    cls = validators.validator_for(root)
    return bool(cls(schema).is_valid(value))


def _object_branch(root: dict[str, Any], sub: Any) -> dict[str, Any] | None:
    for b in _branches(root, sub):
        if b.get("type") == "object" or "properties" in b:
            return b
    return None


def _is_free_text(root: dict[str, Any], sub: Any) -> bool:
    """A string the schema does not pin down (no enum, const, pattern or format)."""
    for b in _branches(root, sub):
        kind = b.get("type")
        if (kind == "string" or (kind is None and "maxLength" in b)) and not (
            {"enum", "const", "pattern", "format"} & set(b)
        ):
            return True
    return False


# ---- narrowing (the generation schema)
def _implied_days(facts: Facts) -> list[str]:
    implied = [rf.WEEKDAYS[date.fromisoformat(d).weekday()] for d in facts.dates]
    return list(dict.fromkeys([*facts.days, *implied]))


_CHOICES: dict[str, Callable[[Facts], list[Any]]] = {
    "name": lambda f: list(f.names),
    "phone": lambda f: list(f.phones),
    "email": lambda f: list(f.emails),
    "day": _implied_days,
    "date": lambda f: list(f.dates),
    "time": lambda f: list(f.times),
    "language": lambda f: [f.language] if f.language else [],
    "opt_out": lambda f: [f.opt_out],
}


def _choices(kind: str, facts: Facts) -> list[Any]:
    """The values the facts allow for a field of this kind."""
    return _CHOICES[kind](facts)


def _sentences(name: str, facts: Facts) -> Sequence[str]:
    if name in CALLER_TEXT:
        return facts.caller_sentences
    if name in NEXT_TEXT:
        return facts.commitments
    return facts.sentences


def narrow(schema: dict[str, Any], facts: Facts) -> dict[str, Any]:
    """The generation schema: `schema` with known fields pinned to the facts and free text to
    sentences of the call (the caller's own for `need`). Extractive on purpose: a 135M model
    picks the right sentence far more often than it writes a faithful one. Every report this
    schema admits also validates against `schema`."""
    root = copy.deepcopy(schema)

    def pin(prop: Any, choices: Sequence[Any], nullable: bool) -> dict[str, Any] | None:
        valid = [c for c in choices if _accepts(root, prop, c)]
        if valid:
            pinned: dict[str, Any] = {"enum": valid}
            return {"anyOf": [pinned, {"type": "null"}]} if nullable else pinned
        return {"type": "null"} if nullable else None

    def visit(sub: Any) -> None:
        obj = _object_branch(root, sub)
        if obj is None:
            return
        props = obj.get("properties", {})
        for name, prop in list(props.items()):
            kind = KINDS.get(name)
            if kind is not None or _is_free_text(root, prop):
                choices = _choices(kind, facts) if kind is not None else _sentences(name, facts)
                pinned = pin(prop, choices, _accepts(root, prop, None))
                if pinned is not None:
                    props[name] = pinned
                continue
            for b in _branches(root, prop):
                visit(b)
                if b.get("type") == "array" and isinstance(b.get("items"), dict):
                    visit(b["items"])

    visit(root)
    return root


# ---- grounding a parsed report
def _leaves(value: Any, path: str) -> Iterator[tuple[str, Any, Any, str | int]]:
    """(path, parent, value, key) of every scalar below `value`."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, f"{path}.{k}", value, k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, f"{path}[{i}]", value, i)


def _walk(
    value: Any, path: str, parent: Any, key: str | int
) -> Iterator[tuple[str, Any, Any, str | int]]:
    if isinstance(value, (dict, list)):
        yield from _leaves(value, path)
    else:
        yield path, parent, value, key


def _subschema(root: dict[str, Any], path: str) -> Any:
    sub: Any = root
    for part in re.findall(r"\.([^.\[]+)|\[(\d+)\]", path):
        name, _index = part
        if name:
            obj = _object_branch(root, sub)
            sub = obj.get("properties", {}).get(name, {}) if obj else {}
        else:
            arrays = [b for b in _branches(root, sub) if b.get("type") == "array"]
            sub = arrays[0].get("items", {}) if arrays else {}
    return sub


def _name_supported(value: str, facts: Facts) -> bool:
    wanted = " ".join(value.split()).casefold()
    if any(wanted == n.casefold() for n in facts.names):
        return True
    tokens = wanted.split()
    if not tokens:
        return False
    # Every part of the name said by the caller as a capitalised word, and not a plain word.
    return all(
        t not in rf._NOT_NAMES
        and re.search(rf"\b{re.escape(t.capitalize())}\b", facts.caller_text) is not None
        for t in tokens
    )


def _check_phone(value: str, facts: Facts, region: str) -> tuple[bool, Any]:
    e164 = rf.phone_e164(value, region)
    return e164 is not None and e164 in facts.phones, e164 or value


def _check_email(value: str, facts: Facts, region: str) -> tuple[bool, Any]:
    return value.strip().lower() in facts.emails, value.strip().lower()


def _check_day(value: str, facts: Facts, region: str) -> tuple[bool, Any]:
    days = rf.weekdays(value)
    return len(set(days)) == 1 and days[0] in _implied_days(facts), days[0] if days else value


def _check_time(value: str, facts: Facts, region: str) -> tuple[bool, Any]:
    found = rf.times(value)
    return bool(found) and all(t in facts.times for t in found), found[0] if found else value


def _check_language(value: str, facts: Facts, region: str) -> tuple[bool, Any]:
    if facts.language is None:
        return re.fullmatch(r"[a-z]{2}", value) is not None, value
    return value == facts.language, facts.language


_CHECKS: dict[str, Callable[[str, Facts, str], tuple[bool, Any]]] = {
    "name": lambda v, f, _r: (_name_supported(v, f), " ".join(v.split())),
    "phone": _check_phone,
    "email": _check_email,
    "day": _check_day,
    "date": lambda v, f, _r: (v in f.dates, v),
    "time": _check_time,
    "language": _check_language,
}


def _check(kind: str, value: Any, facts: Facts, region: str) -> tuple[bool, Any]:
    """(supported, the value normalised) for a field the pre-pass knows."""
    if kind == "opt_out":
        return value is facts.opt_out, facts.opt_out
    if not isinstance(value, str):
        return False, value
    return _CHECKS[kind](value, facts, region)


def _text_supported(value: str, facts: Facts, region: str) -> bool:
    """Free text: its days, numbers and addresses were said, and most of its words were."""
    if any(d not in _choices("day", facts) for d in rf.weekdays(value)):
        return False
    if any(p not in facts.phones for p in rf.phones(value, region)):
        return False
    if any(e not in facts.emails for e in rf.emails(value)):
        return False
    said_words = rf.words(value)
    if len(said_words) >= 6 and len(set(said_words)) < len(said_words) / 2:
        return False  # a degenerate loop ("phone number phone number …"), not a summary
    content = [w for w in said_words if w not in GLUE and len(w) > 2]
    if not content:
        return bool(said_words) and all(w in facts.all_words | GLUE for w in said_words)
    said = sum(1 for w in content if w in facts.all_words)
    return said >= 1 and said / len(content) >= MIN_GROUNDED_SHARE


def ground(report: Any, schema: dict[str, Any], facts: Facts, *, region: str) -> Grounding:
    """Null what the transcript does not support, fill what the facts settle; see module doc."""
    out = Grounding(copy.deepcopy(report))
    if not isinstance(out.report, dict):
        return out
    for path, parent, value, key in list(_leaves(out.report, "$")):
        kind = KINDS.get(key) if isinstance(key, str) else None
        if kind is not None:
            if value is None:
                continue
            ok, normalised = _check(kind, value, facts, region)
            if kind in {"opt_out", "language"} and normalised != value:
                parent[key] = normalised
                out.filled.append(path)
            elif ok:
                parent[key] = normalised
            else:
                parent[key] = None
                out.nulled.append(path)
        elif (
            isinstance(value, str)
            and _is_free_text(schema, _subschema(schema, path))
            and not _text_supported(value, facts, region)
        ):
            parent[key] = None
            out.nulled.append(path)
    _fill(out, schema, facts)
    return out


def _single(kind: str, facts: Facts) -> Any:
    found = _choices(kind, facts)
    return found[0] if len(found) == 1 else None


def _fill(out: Grounding, schema: dict[str, Any], facts: Facts) -> None:
    """Fill null fields the facts settle (one candidate only), where the schema accepts it."""

    def visit(node: dict[str, Any], sub: Any, path: str) -> None:
        obj = _object_branch(schema, sub)
        props = obj.get("properties", {}) if obj else {}
        for key, prop in props.items():
            here = f"{path}.{key}"
            kind = KINDS.get(key)
            if kind is not None and key in node and node[key] is None:
                value = _single(kind, facts)
                if value is not None and _accepts(schema, prop, value):
                    node[key] = value
                    out.filled.append(here)
            elif isinstance(node.get(key), dict):
                visit(node[key], prop, here)
            elif key in node and node[key] is None and key == "appointment":
                slot = _slot(schema, prop, facts)
                if slot is not None:
                    node[key] = slot
                    out.filled.append(here)

    visit(out.report, schema, "$")


def _slot(schema: dict[str, Any], sub: Any, facts: Facts) -> dict[str, Any] | None:
    """An appointment the model missed: the caller spoke of booking and named one day/date."""
    if not _BOOKING.search(facts.caller_text):
        return None
    obj = _object_branch(schema, sub)
    if obj is None:
        return None
    slot = {k: _single(KINDS[k], facts) if k in KINDS else None for k in obj.get("properties", {})}
    if not any(slot.get(k) for k in ("day", "date")):
        return None
    return slot if _accepts(schema, sub, slot) else None
