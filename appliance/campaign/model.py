"""A campaign's settings (stored as JSON on its row), their validation, and the outcomes."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from appliance.campaign.windows import WindowError, parse_windows
from appliance.errors import CallvaultError

# What the AI report can say about a lead, and which of them end the lead.
OUTCOMES = (
    "interested",
    "not_interested",
    "appointment_booked",
    "call_back_later",
    "wrong_person",
    "opt_out",
)
# Outcomes of the call itself (no conversation, or one without a usable report).
CALL_RESULTS = ("busy", "no_answer", "voicemail", "failed", "answered")
CONVERTED = frozenset({"interested", "appointment_booked"})
STATES = ("draft", "running", "paused", "stopped", "done")
_CHANNEL = re.compile(r"[A-Za-z0-9]+/[!-~]{1,200}")
# Settings of one JSON type other than a whole number: (type, how an error names it).
_SCALARS: dict[str, tuple[type, str]] = {
    "dial": (str, "a string"),
    "block_public_holidays": (bool, "true or false"),
}


class CampaignError(CallvaultError):
    pass


@dataclass(frozen=True)
class Settings:
    windows: tuple[str, ...] = ("mon-fri 09:00-18:00",)
    """Calling windows in the lead's local time ('mon-fri 09:00-18:00'); the country's
    statutory hours (appliance.campaign.windows.COUNTRY_HOURS) narrow them further."""
    max_attempts: int = 3
    """Dials per lead at most (blocked attempts do not count)."""
    retry_s: dict[str, int] = field(
        default_factory=lambda: {
            "busy": 900, "no_answer": 3600, "voicemail": 14400, "failed": 1800,
            "call_back_later": 86400,
        }
    )  # fmt: skip
    """Wait before the next attempt, per outcome of the last one."""
    max_concurrent: int = 2
    """Calls out at the same time at most."""
    calls_per_minute: int = 10
    """Dials started in any 60 s at most."""
    ring_timeout_s: int = 30
    dial: str = "PJSIP/{number}"
    """Asterisk channel the number is dialled on ({number}: E.164 without '+' as {digits})."""
    report_wait_s: int = 600
    """How long an answered call waits for its post-call report before it counts as
    `answered` with no outcome."""
    accepted_bases: tuple[str, ...] = ("consent", "contract", "legitimate-interest")
    """Lead bases (the list's consent column) this campaign may call on; others are legally
    ineligible and never dialled."""
    countries: tuple[str, ...] = ()
    """Countries leads may be called in (ISO codes); empty: any."""
    block_public_holidays: bool = True
    """A public holiday of the lead's country is outside every window (most countries'
    telemarketing rules); false only where the operator has checked that calls on holidays are
    allowed in every country the list reaches."""

    def __post_init__(self) -> None:
        try:
            parse_windows(self.windows)
        except WindowError as exc:
            raise CampaignError(str(exc)) from None
        for name in ("max_attempts", "max_concurrent", "calls_per_minute", "ring_timeout_s"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise CampaignError(f"{name} must be a whole number of at least 1, not {value!r}")
        for key, value in self.retry_s.items():
            if key not in (*CALL_RESULTS, "call_back_later"):
                raise CampaignError(f"retry_s: unknown outcome {key!r}")
            if not isinstance(value, int) or value < 0:
                raise CampaignError(f"retry_s.{key} must be seconds (>= 0), not {value!r}")
        if "{number}" not in self.dial and "{digits}" not in self.dial:
            raise CampaignError("dial must contain {number} or {digits}")
        try:
            sample = self.dial.format(number="+46701234567", digits="46701234567")
        except (KeyError, IndexError, ValueError):
            raise CampaignError("dial: only {number} and {digits} may appear in braces") from None
        # It becomes an AMI header value: one printable token, TECH/resource.
        if not _CHANNEL.fullmatch(sample):
            raise CampaignError(f"dial {self.dial!r} is not an Asterisk channel (TECH/resource)")
        if not isinstance(self.report_wait_s, int) or self.report_wait_s < 0:
            raise CampaignError("report_wait_s must be seconds (>= 0)")
        if not isinstance(self.block_public_holidays, bool):
            raise CampaignError("block_public_holidays must be true or false")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, doc: Any) -> Settings:
        """Settings from JSON-like input (an API body, a file); CampaignError names the field."""
        if not isinstance(doc, dict):
            raise CampaignError("campaign settings must be an object")
        known = {f.name for f in fields(cls)}
        unknown = set(doc) - known
        if unknown:
            raise CampaignError(
                f"unknown campaign settings: {', '.join(sorted(map(str, unknown)))}"
            )
        kw: dict[str, Any] = {}
        for k, v in doc.items():
            if k in {"windows", "accepted_bases", "countries"}:
                if not isinstance(v, list | tuple) or not all(isinstance(x, str) for x in v):
                    raise CampaignError(f"{k} must be a list of strings")
                kw[k] = tuple(v)
            elif k in _SCALARS:
                kind, what = _SCALARS[k]
                if not isinstance(v, kind):
                    raise CampaignError(f"{k} must be {what}, not {v!r}")
                kw[k] = v
            elif k == "retry_s":
                if not isinstance(v, dict):
                    raise CampaignError("retry_s must be an object of outcome: seconds")
                kw[k] = {**cls().retry_s, **v}
            else:
                if isinstance(v, bool) or not isinstance(v, int):
                    raise CampaignError(f"{k} must be a whole number, not {v!r}")
                kw[k] = v
        return cls(**kw)

    @classmethod
    def from_json(cls, text: str) -> Settings:
        return cls.from_dict(json.loads(text))
