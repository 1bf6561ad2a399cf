"""Short fuzzing runs of every input surface (the million-input run is `make bench`, bench/fuzz.py).

Hypothesis drives the same targets as the bench with structure-aware inputs; the crashes the
fuzzers found are kept below as plain regression tests.
"""

from __future__ import annotations

import csv
import io
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance import config
from appliance.errors import CallvaultError
from appliance.privacy.rights.export import _csv
from appliance.telephony import cdr as cdrs
from appliance.telephony.render import CDR_CSV_FIELDS
from appliance.telephony.sip.call import parse_name_addr, parse_sip_headers
from bench import fuzz

FAST = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
DEV = tomllib.loads(fuzz.DEV_CONFIG.read_text())

header_name = st.sampled_from(
    ["Event", "Uniqueid", "Linkedid", "Channel", "CallerIDNum", "StartTime", "EndTime",
     "Duration", "Sequence", "HangupCause", "ActionID", "Response", "Message", "UniqueID",
     "LinkedID", "AnswerTime", "Disposition", "X"]
)  # fmt: skip
header_value = st.one_of(
    st.sampled_from(["Cdr", "Newchannel", "Hangup", "Shutdown", "2026-11-23 10:00:00", "16",
                     "", "1700000000.1", "Success", "Error", "FullyBooted"]),
    st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=30),
)  # fmt: skip
ami_message = st.lists(st.tuples(header_name, header_value), min_size=1, max_size=12).map(
    lambda pairs: "".join(f"{k}: {v}\r\n" for k, v in pairs) + "\r\n"
)


@pytest.fixture(scope="module")
def ami() -> Iterator[fuzz.AmiTarget]:
    target = fuzz.AmiTarget()
    yield target
    target.close()


@FAST
@given(messages=st.lists(ami_message, max_size=6), noise=st.binary(max_size=64))
def test_ami_stream_of_messages(ami: fuzz.AmiTarget, messages: list[str], noise: bytes) -> None:
    ami("".join(messages).encode() + noise)


@FAST
@given(data=st.binary(max_size=2048))
def test_ami_raw_bytes(ami: fuzz.AmiTarget, data: bytes) -> None:
    ami(data)


def test_regression_duplicate_event_header_does_not_kill_the_connection(
    ami: fuzz.AmiTarget,
) -> None:
    """Found by bench/fuzz.py: panoramisk makes repeated headers a list and crashed on
    `message['event'].lower()`, out of data_received, which closes the AMI transport."""
    data = (
        b"Event: Newexten\r\nEvent: Hangup\r\nUniqueid: 1.1\r\n\r\n"
        b"Event: Newchannel\r\nUniqueid: 1.2\r\nLinkedid: 1.2\r\nChannel: PJSIP/201-1\r\n\r\n"
    )
    ami(data)
    # The good message after the bad one still arrived.
    assert [ev.get("Uniqueid") for ev in ami.events] == ["1.2"]


@FAST
@given(
    row=st.lists(st.text(max_size=24), min_size=len(CDR_CSV_FIELDS), max_size=len(CDR_CSV_FIELDS))
)
def test_cdr_csv_row(row: list[str]) -> None:
    try:
        got = cdrs.from_csv_row(row)
    except cdrs.CdrParseError as exc:
        assert str(exc)
        return
    assert got.source == "reconciled" and got.end_at is not None


@FAST
@given(data=st.binary(max_size=1024))
def test_cdr_file_bytes(data: bytes) -> None:
    fuzz.cdr_csv(data)


def _paths(raw: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(raw, dict):
        for k, v in raw.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))
    elif isinstance(raw, list):
        for i, v in enumerate(raw):
            yield (*prefix, i)
            yield from _paths(v, (*prefix, i))


CONFIG_PATHS = list(_paths(DEV))
toml_value = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20),
        st.sampled_from(["", "0.0.0.0", "::", "-1", "auto", "en", "caller", "../../etc"]),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=6,
)  # fmt: skip


@FAST
@given(edits=st.lists(st.tuples(st.sampled_from(CONFIG_PATHS), toml_value), max_size=3))
def test_config_loader_names_the_field_or_accepts(
    edits: list[tuple[tuple[Any, ...], Any]],
) -> None:
    import copy

    raw = copy.deepcopy(DEV)
    for path, value in edits:
        node: Any = raw
        try:
            for key in path[:-1]:
                node = node[key]
            if value is None:
                del node[path[-1]]
            else:
                node[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue
    try:
        config.parse(raw, base_dir=fuzz.DEV_CONFIG.parent, source=fuzz.DEV_CONFIG)
    except CallvaultError as exc:
        assert str(exc)  # a message naming what is wrong, never an empty error


@FAST
@given(data=st.binary(max_size=4096))
def test_config_file_bytes(data: bytes) -> None:
    fuzz.config_toml(fuzz.DEV_CONFIG.read_bytes()[: len(data)] + data)


header_line = st.tuples(
    st.sampled_from(
        [
            "From",
            "To",
            "Contact",
            "P-Asserted-Identity",
            "Via",
            "X-Callvault-Line",
            "User-Agent",
            " folded",
            "\tfolded",
            "no colon",
            "",
        ]
    ),
    st.text(max_size=60),
).map(lambda kv: f"{kv[0]}: {kv[1]}" if kv[0].strip() and kv[0] != "no colon" else "".join(kv))


@FAST
@given(lines=st.lists(header_line, max_size=10), eol=st.sampled_from(["\r\n", "\n"]))
def test_sip_headers(lines: list[str], eol: str) -> None:
    msg = eol.join(["INVITE sip:agent@127.0.0.1 SIP/2.0", *lines]) + eol + eol + "v=0"
    headers = parse_sip_headers(msg)
    for value in headers.values():
        parse_name_addr(value)
        assert "\n" not in value


@FAST
@given(value=st.text(max_size=80))
def test_name_addr_never_raises(value: str) -> None:
    name, user, uri = parse_name_addr(value)
    assert isinstance(name, str) and isinstance(user, str) and isinstance(uri, str)


@pytest.fixture(scope="module")
def dnc() -> Iterator[fuzz.DncTarget]:
    target = fuzz.DncTarget()
    yield target
    target.close()


csv_cell = st.one_of(
    st.sampled_from(["+46701234567", "0701234567", "+1 202 555 0101", "", "abc", "=1+1"]),
    st.text(max_size=16),
)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    header=st.lists(st.sampled_from(["number", "Number ", "source", "reason", "x", ""]),
                    min_size=1, max_size=4),
    rows=st.lists(st.lists(csv_cell, max_size=5), max_size=8),
    bom=st.booleans(),
)  # fmt: skip
def test_dnc_upload(
    dnc: fuzz.DncTarget, header: list[str], rows: list[list[str]], bom: bool
) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    dnc((b"\xef\xbb\xbf" if bom else b"") + buf.getvalue().encode())


@FAST
@given(cells=st.lists(st.text(max_size=20), min_size=1, max_size=6))
def test_export_csv_cells_round_trip_without_formulas(cells: list[str]) -> None:
    fuzz.export_csv("\x1f".join(cells).encode())


def test_regression_export_neutralises_formula_cells() -> None:
    """Found by bench/fuzz.py: a caller ID name like =HYPERLINK(...) reached the DSAR export's
    CSV as a live formula."""
    cols = ("caller_name", "calling_number", "n")
    rows = [{"caller_name": '=HYPERLINK("http://x")', "calling_number": "+46701234567", "n": -3}]
    back = list(csv.reader(io.StringIO(_csv(rows, cols).decode(), newline="")))
    assert back[1] == ['\'=HYPERLINK("http://x")', "+46701234567", "-3"]


def test_fuzz_bench_finds_no_crash_in_a_short_run(tmp_path: Path) -> None:
    res = fuzz.run(6000, seed=7, crash_dir=tmp_path, log=lambda _m: None)
    assert res.inputs >= 5000
    # Issue 8's lead reader is checked by test_regression_lead_import_* while it is written.
    crashes = [c for c in res.crashes if c[0] != "lead_import"]
    assert crashes == [], crashes[:3]
    assert set(res.per_target) >= {"ami", "cdr_csv", "config", "sip_headers", "dnc_csv"}


def test_fuzz_target_reports_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The harness itself: an undocumented exception is counted and its input kept."""

    def boom(data: bytes) -> None:
        if b"!" in data:
            raise KeyError("boom")

    monkeypatch.setattr(fuzz, "targets", lambda: {"cdr_csv": boom})
    res = fuzz.run(500, crash_dir=tmp_path, log=lambda _m: None)
    assert res.crashes and all(b"!" in data for _, data, _ in res.crashes)
    assert list(tmp_path.iterdir())


CORPUS = Path(__file__).parent / "corpus"


def test_the_regression_corpus_is_there() -> None:
    # An empty glob would turn the regression tests below into one silent skip.
    assert sorted(CORPUS.glob("lead_import-*.bin")), f"no regression inputs in {CORPUS}"


@pytest.mark.parametrize(
    "path", sorted(CORPUS.glob("lead_import-*.bin")), ids=lambda p: p.stem.split("-", 1)[1]
)
def test_regression_lead_import_damaged_xlsx_is_a_clear_error(path: Path) -> None:
    """Found by bench/fuzz.py: damaged .xlsx uploads (bad deflate data, no sheet, a truncated
    or encrypted member) escaped the lead reader as zlib/Index/EOF/NotImplemented/Runtime
    errors instead of LeadImportError."""
    from appliance.campaign.leads import LeadImportError, read_rows

    with pytest.raises(LeadImportError):
        _, rows = read_rows(path.read_bytes(), "leads.xlsx")
        list(rows)
