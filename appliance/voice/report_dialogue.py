"""The post-call report of a call the playbook's dialogue engine held: written from the slots
the engine collected and the caller confirmed, not re-guessed from the transcript by the LLM.

Only for lines on the built-in report schema (its fields are the engine's slots); a line with
its own `summary_schema` still gets the LLM report, grounded as usual.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from appliance.voice.dialogue.dates import WEEKDAY_NAMES

PURPOSE = {
    "book": "appointment",
    "cancel": "cancellation",
    "message": "message",
    "question": "question",
}
MODEL = "dialogue"
"""What the stored report names as its writer (no LLM wrote it)."""


def report_from_dialogue(outcome: dict[str, Any], *, language: str) -> dict[str, Any]:
    """A report of the default schema from `Outcome.doc()`."""
    task = str(outcome.get("task") or "")
    status = str(outcome.get("status") or "")
    slots: dict[str, Any] = dict(outcome.get("slots") or {})
    appointment = None
    if task in ("book", "cancel") and slots.get("date"):
        day = date.fromisoformat(str(slots["date"]))
        appointment = {
            "day": WEEKDAY_NAMES[day.weekday()].capitalize(),
            "date": day.isoformat(),
            "time": slots.get("time") or slots.get("part"),
        }
    return {
        "purpose": PURPOSE.get(task, "other"),
        "caller_name": slots.get("name") or None,
        "contact": {"phone": slots.get("phone") or None, "email": None},
        "need": _need(task, status, slots, outcome)[:300],
        "appointment": appointment,
        "follow_up": _follow_up(task, status, slots),
        "opt_out": status == "opted_out",
        "language": language if len(language) == 2 else "en",
    }


def _need(task: str, status: str, slots: dict[str, Any], outcome: dict[str, Any]) -> str:
    when = " ".join(str(slots[k]) for k in ("date", "time") if slots.get(k))
    if task == "book":
        return f"an appointment on {when}" if when else "an appointment"
    if task == "cancel":
        return f"to cancel the appointment on {when}" if when else "to cancel an appointment"
    if task == "message":
        return str(slots.get("message") or "to leave a message")
    if task == "question":
        answered = ", ".join(str(a).replace("_", " ") for a in outcome.get("answered") or [])
        return f"a question about {answered}" if answered else "a question the sheet cannot answer"
    if task == "opt_out":
        return "not to be called again"
    return "to speak to a person"


def _follow_up(task: str, status: str, slots: dict[str, Any]) -> str | None:
    if status == "transferred":
        return "the call was handed to a colleague"
    if status == "opted_out":
        return "the number is on the do-not-call list"
    if task == "book" and status == "done":
        return f"booked for {slots.get('date')} at {slots.get('time')}"
    if task == "message" and status == "done":
        return "call the caller back"
    if status in ("open", "abandoned") and task:
        return "the caller hung up before the task was done: call back"
    return None
