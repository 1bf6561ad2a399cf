"""CDRs from Asterisk's two sources: live AMI `Cdr` events and its own CDR file (cdr_custom).

Both carry the same fields (see render.CDR_EXTRA / CDR_CSV_FIELDS); the file is read back after
an AMI outage to find CDRs whose events were missed.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path

from appliance.store import CdrRow
from appliance.telephony.render import CDR_CSV_FIELDS

# Q.850 cause values Asterisk reports (HANGUPCAUSE), as an operator reads them.
CAUSES: dict[int, str] = {
    0: "Unknown",
    1: "Unallocated number",
    3: "No route to destination",
    16: "Normal clearing",
    17: "User busy",
    18: "No user responding",
    19: "No answer",
    20: "Subscriber absent",
    21: "Call rejected",
    22: "Number changed",
    27: "Destination out of order",
    28: "Invalid number format",
    29: "Facility rejected",
    31: "Normal, unspecified",
    34: "No circuit available",
    38: "Network out of order",
    41: "Temporary failure",
    42: "Switching equipment congestion",
    44: "Requested channel not available",
    50: "Requested facility not subscribed",
    58: "Bearer capability not available",
    65: "Bearer capability not implemented",
    66: "Channel type not implemented",
    69: "Requested facility not implemented",
    81: "Invalid call reference",
    88: "Incompatible destination",
    95: "Invalid message",
    96: "Mandatory information element missing",
    97: "Message type non-existent",
    100: "Invalid information element contents",
    102: "Recovery on timer expiry",
    111: "Protocol error",
    127: "Interworking, unspecified",
}

_CLID = re.compile(r'^\s*"?(?P<name>[^"<]*?)"?\s*<(?P<num>[^>]*)>\s*$')


class CdrParseError(ValueError):
    pass


def cause_text(cause: int | None) -> str:
    if cause is None:
        return "Unknown"
    return CAUSES.get(cause, f"Cause {cause}")


def split_clid(clid: str) -> tuple[str, str]:
    """`"Front desk" <201>` -> ("Front desk", "201")."""
    m = _CLID.match(clid)
    if not m:
        return "", clid.strip()
    return m.group("name").strip(), m.group("num").strip()


def _cause(raw: str) -> int | None:
    raw = raw.strip()
    return int(raw) if raw.isdigit() else None


def _direction(raw: str) -> str:
    return raw if raw in {"inbound", "outbound", "internal"} else "unknown"


def _local_time(raw: str, field: str) -> float | None:
    # AMI Cdr events give local time of the box, to the second.
    raw = raw.strip()
    if not raw:
        return None
    try:
        return datetime.strptime(raw, "%Y-%m-%d %H:%M:%S").astimezone().timestamp()
    except ValueError:
        raise CdrParseError(f"{field}: not a time: {raw!r}") from None


def _int(raw: str, field: str) -> int:
    try:
        return int(raw.strip() or 0)
    except ValueError:
        raise CdrParseError(f"{field}: not an integer: {raw!r}") from None


def from_event(ev: Mapping[str, str]) -> CdrRow:
    """A CdrRow from an AMI `Cdr` event (cdr_manager with the appliance's mappings)."""
    try:
        uniqueid = ev["UniqueID"]
        linkedid = ev.get("LinkedID") or uniqueid
        start = _local_time(ev["StartTime"], "StartTime")
        end = _local_time(ev["EndTime"], "EndTime")
    except KeyError as exc:
        raise CdrParseError(f"Cdr event without {exc.args[0]}") from None
    if start is None or end is None:
        raise CdrParseError("Cdr event without start or end time")
    name, number = split_clid(ev.get("CallerID", ""))
    cause = _cause(ev.get("HangupCause", ""))
    return CdrRow(
        call_id=linkedid,
        uniqueid=uniqueid,
        sequence=_int(ev.get("Sequence", "0"), "Sequence"),
        calling_number=ev.get("Source", "") or number,
        caller_name=name,
        dialed_number=ev.get("Dialed", "") or ev.get("Destination", ""),
        context=ev.get("DestinationContext", ""),
        direction=_direction(ev.get("Direction", "")),
        line=ev.get("Line") or None,
        start_at=start,
        answer_at=_local_time(ev.get("AnswerTime", ""), "AnswerTime"),
        end_at=end,
        duration_s=_int(ev.get("Duration", "0"), "Duration"),
        billable_s=_int(ev.get("BillableSeconds", "0"), "BillableSeconds"),
        disposition=ev.get("Disposition", "UNKNOWN"),
        hangup_cause=cause,
        hangup_cause_text=cause_text(cause),
        channel=ev.get("Channel", ""),
        dest_channel=ev.get("DestinationChannel", ""),
        last_app=ev.get("LastApplication", ""),
        source="ami",
    )


def _epoch(raw: str) -> float | None:
    raw = raw.strip()
    if not raw or raw in {"0", "0.000000"}:
        return None
    try:
        return float(raw)
    except ValueError:
        raise CdrParseError(f"not an epoch time: {raw!r}") from None


def from_csv_row(row: list[str]) -> CdrRow:
    """A CdrRow from one line of Asterisk's own CDR file (render.CDR_CSV_FIELDS order)."""
    if len(row) != len(CDR_CSV_FIELDS):
        raise CdrParseError(f"expected {len(CDR_CSV_FIELDS)} columns, got {len(row)}")
    f = dict(zip(CDR_CSV_FIELDS, row, strict=True))
    start, end = _epoch(f["start"]), _epoch(f["end"])
    if start is None or end is None:
        raise CdrParseError("row without start or end time")
    name, number = split_clid(f["clid"])
    cause = _cause(f["cv_cause"])
    return CdrRow(
        call_id=f["linkedid"] or f["uniqueid"],
        uniqueid=f["uniqueid"],
        sequence=_int(f["sequence"], "sequence"),
        calling_number=f["src"] or number,
        caller_name=name,
        dialed_number=f["cv_dialed"] or f["dst"],
        context=f["dcontext"],
        direction=_direction(f["cv_direction"]),
        line=f["cv_line"] or None,
        start_at=start,
        answer_at=_epoch(f["answer"]),
        end_at=end,
        duration_s=_int(f["duration"], "duration"),
        billable_s=_int(f["billsec"], "billsec"),
        disposition=f["disposition"],
        hangup_cause=cause,
        hangup_cause_text=cause_text(cause),
        channel=f["channel"],
        dest_channel=f["dstchannel"],
        last_app=f["lastapp"],
        source="reconciled",
    )


def read_csv(path: Path, since: float = 0.0) -> Iterator[CdrRow | CdrParseError]:
    """CDRs in Asterisk's file ending at or after `since`; bad rows come back as errors with
    their line number, so one corrupt line neither hides the others nor goes unnoticed."""
    try:
        fh = path.open(newline="", encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return
    with fh:
        for n, row in enumerate(csv.reader(fh), 1):
            if not row:
                continue
            try:
                cdr = from_csv_row(row)
            except CdrParseError as exc:
                yield CdrParseError(f"{path}:{n}: {exc}")
                continue
            if cdr.end_at >= since:
                yield cdr
