import csv
import io
from pathlib import Path

import pytest

from appliance.telephony import cdr
from appliance.telephony.render import CDR_CSV_FIELDS

# A Cdr event as Asterisk 22 sent it to the appliance (cdr_manager with our mappings).
EVENT = {
    "Event": "Cdr",
    "Source": "201",
    "Destination": "100",
    "DestinationContext": "callvault-internal",
    "CallerID": '"Front desk" <201>',
    "Channel": "PJSIP/201-00000000",
    "DestinationChannel": "PJSIP/agent-00000001",
    "LastApplication": "Dial",
    "StartTime": "2026-11-23 12:03:20",
    "AnswerTime": "2026-11-23 12:03:21",
    "EndTime": "2026-11-23 12:03:25",
    "Duration": "5",
    "BillableSeconds": "4",
    "Disposition": "ANSWERED",
    "UniqueID": "1795435400.0",
    "LinkedID": "1795435400.0",
    "Sequence": "3",
    "HangupCause": "16",
    "Line": "reception",
    "Direction": "inbound",
    "Dialed": "100",
}


def test_event_to_row() -> None:
    row = cdr.from_event(EVENT)
    assert row.call_id == "1795435400.0"
    assert (row.calling_number, row.caller_name, row.dialed_number) == ("201", "Front desk", "100")
    assert row.answer_at is not None and row.answer_at - row.start_at == 1
    assert (row.duration_s, row.billable_s) == (5, 4)
    assert (row.hangup_cause, row.hangup_cause_text) == (16, "Normal clearing")
    assert (row.line, row.direction, row.source) == ("reception", "inbound", "ami")
    assert row.dest_channel == "PJSIP/agent-00000001"


def test_unanswered_event_has_no_answer_time() -> None:
    row = cdr.from_event({**EVENT, "AnswerTime": "", "Disposition": "NO ANSWER", "HangupCause": ""})
    assert row.answer_at is None
    assert row.hangup_cause is None and row.hangup_cause_text == "Unknown"


@pytest.mark.parametrize("missing", ["UniqueID", "StartTime", "EndTime"])
def test_event_missing_fields_is_a_clear_error(missing: str) -> None:
    ev = {k: v for k, v in EVENT.items() if k != missing}
    with pytest.raises(cdr.CdrParseError, match=missing):
        cdr.from_event(ev)


def test_bad_time_is_a_clear_error() -> None:
    with pytest.raises(cdr.CdrParseError, match="StartTime"):
        cdr.from_event({**EVENT, "StartTime": "yesterday"})


def _csv_line(**over: str) -> str:
    base = {
        "uniqueid": "1795435400.0",
        "linkedid": "1795435400.0",
        "sequence": "0",
        "clid": '"sipp" <sipp>',
        "src": "sipp",
        "dst": "901",
        "dcontext": "callvault-inbound",
        "channel": "PJSIP/loadgen-00000000",
        "dstchannel": "",
        "lastapp": "Wait",
        "start": "1795435400.427539",
        "answer": "1795435400.428672",
        "end": "1795435402.434096",
        "duration": "2",
        "billsec": "2",
        "disposition": "ANSWERED",
        "cv_cause": "16",
        "cv_line": "hello",
        "cv_direction": "inbound",
        "cv_dialed": "901",
    }
    base.update(over)
    buf = io.StringIO()
    csv.writer(buf, quoting=csv.QUOTE_ALL).writerow([base[f] for f in CDR_CSV_FIELDS])
    return buf.getvalue()


def test_csv_file_with_a_corrupt_line(tmp_path: Path) -> None:
    path = tmp_path / "callvault.csv"
    path.write_text(
        _csv_line()
        + '"garbage","line"\n'
        + _csv_line(uniqueid="1795435500.1", start="1795435500.0", end="1795435510.5")
    )
    items = list(cdr.read_csv(path))
    rows = [i for i in items if not isinstance(i, cdr.CdrParseError)]
    errors = [i for i in items if isinstance(i, cdr.CdrParseError)]
    assert len(rows) == 2 and len(errors) == 1
    assert "callvault.csv:2" in str(errors[0])
    assert rows[0].start_at == pytest.approx(1795435400.427539)
    assert rows[0].caller_name == "sipp" and rows[0].source == "reconciled"
    # since= filters by end time
    later = [i for i in cdr.read_csv(path, since=1795435505) if not isinstance(i, Exception)]
    assert [r.uniqueid for r in later] == ["1795435500.1"]


def test_missing_file_yields_nothing(tmp_path: Path) -> None:
    assert list(cdr.read_csv(tmp_path / "nope.csv")) == []


def test_split_clid() -> None:
    assert cdr.split_clid('"A B" <123>') == ("A B", "123")
    assert cdr.split_clid("<123>") == ("", "123")
    assert cdr.split_clid("123") == ("", "123")
