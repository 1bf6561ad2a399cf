"""Rights requests (GDPR Art. 15-22): kinds, the status machine, deadlines, errors."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from appliance.errors import CallvaultError


class Kind(StrEnum):
    ACCESS = "access"  # Art. 15 and 20 (portability): one export serves both
    ERASURE = "erasure"  # Art. 17
    RECTIFICATION = "rectification"  # Art. 16
    RESTRICTION = "restriction"  # Art. 18
    OBJECTION = "objection"  # Art. 21: opt-out, adds to the do-not-call list


class Status(StrEnum):
    IDENTITY_UNVERIFIED = "identity_unverified"
    PENDING = "pending"  # verified, waiting to be processed
    IN_PROCESSING = "in_processing"
    ERROR = "error"  # a step failed (see the log); `process` resumes after the last done step
    COMPLETE = "complete"
    DENIED = "denied"  # refused, with a reason
    FORWARDED = "forwarded"  # handed to the controller whose data it concerns, with an export


CLOSED = frozenset({Status.COMPLETE, Status.DENIED, Status.FORWARDED})
# Which status each action may start from.
MAY_VERIFY = frozenset({Status.IDENTITY_UNVERIFIED})
MAY_PROCESS = frozenset({Status.PENDING, Status.IN_PROCESSING, Status.ERROR})
MAY_REFUSE = frozenset({Status.IDENTITY_UNVERIFIED, Status.PENDING, Status.ERROR})

# Art. 12(3): one month, extendable by two further months with reasons given.
RESPONSE_MONTHS = 1
EXTENSION_MONTHS = 2
MAX_TEXT = 500


class RightsError(CallvaultError):
    pass


class VerificationError(RightsError):
    """Wrong, expired or exhausted one-time code, or an attestation without a note."""


class UnknownSubjectError(RightsError):
    """The appliance holds no personal data about this identifier."""


def add_months(ts: float, months: int) -> float:
    """Same day-of-month `months` later (clamped to the month's end), in UTC."""
    d = datetime.fromtimestamp(ts, UTC)
    month0 = d.month - 1 + months
    year, month = d.year + month0 // 12, month0 % 12 + 1
    day = min(d.day, calendar.monthrange(year, month)[1])
    return d.replace(year=year, month=month, day=day).timestamp()


def text(value: str, what: str, *, required: bool = True) -> str:
    value = value.strip()
    if required and not value:
        raise RightsError(f"{what} is required")
    if len(value) > MAX_TEXT:
        raise RightsError(f"{what} is longer than {MAX_TEXT} characters")
    return value


@dataclass(frozen=True)
class RightsRequest:
    """A request as the operator sees it: no personal data (the identifier stays sealed)."""

    id: int
    kind: Kind
    status: Status
    subject_kind: str
    channel: str
    received_at: float
    due_at: float
    extended: bool
    extension_reason: str
    verified_at: float | None
    verified_by: str
    verification: str
    refused_reason: str
    response: dict[str, Any]
    export_path: str
    closed_at: float | None

    @property
    def closed(self) -> bool:
        return self.status in CLOSED

    def overdue(self, now: float) -> bool:
        return not self.closed and now > self.due_at
