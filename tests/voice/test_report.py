"""The post-call report: generation with retries, grounding, storage, review, erasure, export."""

from __future__ import annotations

import json
import time
import tomllib
import zipfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import pytest_asyncio
from rich.console import Console

from appliance import config
from appliance.config import Config
from appliance.models.manifest import ModelError
from appliance.privacy import Actor, Identifier, KeyShreddedError, Privacy
from appliance.privacy.rights import Rights
from appliance.privacy.rights.export import schema as export_schema
from appliance.store import Database
from appliance.voice import report_cli
from appliance.voice.report import (
    ReportError,
    ReportVault,
    ReportWriter,
    Turn,
    default_schema,
    load_schema,
)
from appliance.voice.report_facts import extract
from appliance.voice.report_ground import ground, narrow
from appliance.voice.report_model import load_report_model
from tests.privacy.rights_fixtures import OP, done
from tests.store.test_db import CDR

REPO = Path(__file__).resolve().parents[2]
MODELS = Path(tomllib.loads((REPO / "config" / "callvault.dev.toml").read_text())["models"]["dir"])
CALL = "1700000000.7"
CALLER_ID = "0731112233"  # the number the call came from
STARTED = 1_700_000_000.0  # Tuesday 2023-11-14, 22:13 UTC
GREETING = "Hello, you have reached Callvault Dental. How can I help?"
ASK = (
    "Hi, I would like to book an appointment for next Tuesday morning, please. "
    "My name is Anna Berg, my number is 070 123 45 67."
)
REPLY = "Thank you Anna, I have noted Tuesday morning. We will confirm by phone."
TURNS = [Turn("agent", 0.0, GREETING), Turn("caller", 3.2, ASK, "en"), Turn("agent", 11.0, REPLY)]
GOOD = {
    "purpose": "appointment",
    "caller_name": "Anna Berg",
    "contact": {"phone": "070 123 45 67", "email": None},
    "need": "Hi, I would like to book an appointment for next Tuesday morning, please.",
    "appointment": {"day": "Tuesday", "date": None, "time": "morning"},
    "follow_up": "We will confirm by phone.",
    "opt_out": False,
    "language": "en",
}
CUSTOM_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://example.invalid/callback/1",
    "type": "object",
    "additionalProperties": False,
    "required": ["topic", "phone", "wants_callback"],
    "properties": {
        "topic": {"type": "string", "maxLength": 200, "description": "What the call was about."},
        "phone": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "wants_callback": {"type": "boolean"},
    },
}
OPERATOR = Actor("reviewer", "supervisor")


@dataclass
class FakeModel:
    """Returns scripted outputs in turn (the last one repeats) and records what it was asked."""

    outputs: Sequence[str]
    name: str = "fake-llm"
    calls: list[dict[str, Any]] = field(default_factory=list)

    def generate(
        self,
        messages: list[dict[str, str]],
        schema: dict[str, Any],
        *,
        temperature: float,
        seed: int,
        max_tokens: int,
    ) -> str:
        self.calls.append({"messages": messages, "schema": schema, "t": temperature, "seed": seed})
        return self.outputs[min(len(self.calls) - 1, len(self.outputs) - 1)]


class Turns:
    def __init__(self, by_call: dict[str, list[Turn]]) -> None:
        self.by_call = by_call

    async def turns(self, call_id: str) -> list[Turn]:
        return self.by_call.get(call_id, [])


def make_cfg(tmp_path: Path, **line: Any) -> Config:
    schema = tmp_path / "callback.schema.json"
    schema.write_text(json.dumps(CUSTOM_SCHEMA))
    raw = {
        "state_dir": "state",
        "asterisk": {"ami_secret": "unused-in-unit-tests"},
        "models": {"dir": str(MODELS), "profile": "cpu"},
        "lines": [
            {"name": "reception", "extension": "100", **line},
            {"name": "callback", "extension": "105", "summary_schema": str(schema)},
        ],
        "extensions": [{"number": "201", "name": "Desk"}],
    }
    return config.parse(raw, base_dir=tmp_path)


@pytest_asyncio.fixture
async def privacy(tmp_path: Path) -> AsyncIterator[Privacy]:
    cfg = make_cfg(tmp_path)
    async with Database(cfg.database) as db:
        yield Privacy(cfg, db)


async def add_call(privacy: Privacy, call_id: str = CALL, line: str = "reception") -> None:
    cdr = replace(
        CDR, call_id=call_id, uniqueid=call_id, calling_number=CALLER_ID, caller_name="",
        line=line, start_at=STARTED, end_at=STARTED + 20,
    )  # fmt: skip
    await privacy.subjects.add_cdr(cdr)


def writer(
    privacy: Privacy, model: Any, turns: list[Turn] | None = None, **kw: Any
) -> ReportWriter:
    source = Turns({CALL: TURNS if turns is None else turns})
    return ReportWriter(privacy.cfg, privacy.db, privacy, lambda: model, source, **kw)


async def subject_items(privacy: Privacy, ident: Identifier) -> set[tuple[str, str, str]]:
    return {(i["item_type"], i["item_id"], i["role"]) for i in await privacy.subjects.items(ident)}


# ---- the pre-pass
def test_facts_from_the_callers_words() -> None:
    facts = extract(TURNS, region="SE", started_at=STARTED)
    assert facts.days == ("Tuesday",)
    assert facts.times == ("morning",)
    assert facts.phones == ("+46701234567",)
    assert facts.names == ("Anna Berg",)
    assert facts.language == "en" and not facts.opt_out
    # The agent's words are not the caller's: "confirm" is only in the agent's turn.
    assert "confirm" not in facts.caller_words and "confirm" in facts.all_words
    assert facts.caller_sentences == (
        "Hi, I would like to book an appointment for next Tuesday morning, please.",
    )
    assert facts.commitments == ("We will confirm by phone.",)


@pytest.mark.parametrize(
    ("said", "field_", "expected"),
    [
        ("Could I come tomorrow at 3 pm?", "dates", ("2023-11-15",)),
        ("Could I come tomorrow at 3 pm?", "times", ("15:00",)),
        ("Maybe on the 5th of December around 10:30", "dates", ("2023-12-05",)),
        ("Maybe on the 5th of December around 10:30", "times", ("10:30",)),
        ("Is March 3 possible, or 2024-01-09?", "dates", ("2024-03-03", "2024-01-09")),
        ("Write to anna dot berg at example dot com", "emails", ("anna.berg@example.com",)),
        ("Mail Anna.Berg@Example.com please", "emails", ("anna.berg@example.com",)),
        ("Jag heter Anna Berg och vill boka en tid på tisdag", "days", ("Tuesday",)),
        ("Jag heter Anna Berg och vill boka en tid på tisdag", "names", ("Anna Berg",)),
        ("This is urgent, not Monday but Friday", "names", ()),
        ("This is urgent, not Monday but Friday", "days", ("Monday", "Friday")),
        ("Call me on +46 8 123 456 78", "phones", ("+46812345678",)),
        ("My order number is 12345", "phones", ()),
    ],
)
def test_fact_rules(said: str, field_: str, expected: tuple[str, ...]) -> None:
    facts = extract([Turn("caller", 0.0, said)], region="SE", started_at=STARTED)
    assert getattr(facts, field_) == expected


@pytest.mark.parametrize(
    ("said", "opt_out"),
    [
        ("Please don't call me again.", True),
        ("Remove my number from your list", True),
        ("Sluta ringa mig", True),
        ("Please call me back on Monday", False),
        ("I don't want to stop the appointment", False),
    ],
)
def test_opt_out_rule(said: str, opt_out: bool) -> None:
    assert extract([Turn("caller", 0.0, said)], region="SE", started_at=STARTED).opt_out is opt_out


def test_narrowed_schema_admits_only_what_was_said() -> None:
    facts = extract(TURNS, region="SE", started_at=STARTED)
    schema = default_schema()
    gen = narrow(schema, facts)
    props = gen["properties"]
    assert props["caller_name"] == {"anyOf": [{"enum": ["Anna Berg"]}, {"type": "null"}]}
    assert props["contact"]["properties"]["email"] == {"type": "null"}
    assert props["opt_out"] == {"enum": [False]}
    day = gen["properties"]["appointment"]["anyOf"][0]["properties"]["day"]
    assert day == {"anyOf": [{"enum": ["Tuesday"]}, {"type": "null"}]}
    assert props["need"] == {"enum": [GOOD["need"]]}
    # Whatever the narrowed schema admits validates against the line's schema.
    jsonschema.validate({**GOOD, "contact": {"phone": "+46701234567", "email": None}}, gen)
    jsonschema.validate({**GOOD, "contact": {"phone": "+46701234567", "email": None}}, schema)


def test_grounding_nulls_what_was_not_said_and_fills_what_was() -> None:
    facts = extract(TURNS, region="SE", started_at=STARTED)
    invented = {
        **GOOD,
        "caller_name": "John Smith",
        "contact": {"phone": None, "email": "john@example.com"},
        "appointment": {"day": "Friday", "date": "2023-11-17", "time": "10:00"},
        "follow_up": "Send the invoice for the root canal treatment.",
        "opt_out": True,
    }
    g = ground(invented, default_schema(), facts, region="SE")
    assert g.report["caller_name"] == "Anna Berg"  # invented name dropped, the said one filled
    assert g.report["contact"] == {"phone": "+46701234567", "email": None}
    assert g.report["appointment"] == {"day": "Tuesday", "date": None, "time": "morning"}
    assert g.report["follow_up"] is None
    assert g.report["opt_out"] is False
    assert set(g.nulled) == {
        "$.caller_name", "$.contact.email", "$.appointment.day", "$.appointment.date",
        "$.appointment.time", "$.follow_up",
    }  # fmt: skip
    assert {"$.caller_name", "$.contact.phone", "$.appointment.day", "$.opt_out"} <= set(g.filled)
    # Notes name paths, never values.
    assert "John" not in json.dumps([g.nulled, g.filled])


def test_grounding_fills_a_slot_the_model_missed_and_days_of_dates() -> None:
    said = "Can I book a cleaning on the 15th of November at 2 pm?"
    facts = extract([Turn("caller", 0.0, said)], region="SE", started_at=STARTED)
    missed = {**GOOD, "caller_name": None, "contact": {"phone": None, "email": None},
              "appointment": None, "need": said, "follow_up": None}  # fmt: skip
    g = ground(missed, default_schema(), facts, region="SE")
    # The caller spoke of booking and named one date: the slot is filled, its weekday implied.
    assert g.report["appointment"] == {"day": "Wednesday", "date": "2023-11-15", "time": "14:00"}
    assert g.filled == ["$.appointment"]
    named = {**missed, "appointment": {"day": "Wednesday", "date": None, "time": "2 PM"}}
    g = ground(named, default_schema(), facts, region="SE")
    assert g.report["appointment"] == {"day": "Wednesday", "date": "2023-11-15", "time": "14:00"}
    assert g.nulled == [] and g.filled == ["$.appointment.date"]
    # Without talk of booking, a named day is not taken for an appointment.
    chat = extract([Turn("caller", 0.0, "We spoke on Monday.")], region="SE", started_at=STARTED)
    assert ground(missed, default_schema(), chat, region="SE").report["appointment"] is None


# ---- the writer
async def test_valid_report_is_stored_sealed_linked_and_read_audited(privacy: Privacy) -> None:
    await add_call(privacy)
    model = FakeModel([json.dumps(GOOD)])
    result = await writer(privacy, model).report(CALL)
    assert result.status == "ok" and result.attempts == 1 and result.review_id is None
    assert result.report is not None
    assert result.report["appointment"]["day"] == "Tuesday"
    assert result.report["contact"]["phone"] == "+46701234567"  # normalised to E.164
    # The prompt carried the transcript and the grammar schema the caller's facts.
    assert ASK in model.calls[0]["messages"][-1]["content"]
    assert model.calls[0]["t"] == 0.0

    view = await ReportVault(privacy.db, privacy).read_report(CALL, OPERATOR, "quality check")
    assert view.report == result.report and view.status == "ok" and view.model == "fake-llm"
    audit = await privacy.db.audit_rows()
    assert [r["action"] for r in audit if r["object"] == f"report:{result.report_id}"] == [
        "report.create",
        "report.view",
    ]
    with pytest.raises(ReportError, match="purpose"):
        await ReportVault(privacy.db, privacy).read_report(CALL, OPERATOR, " ")

    # "Everything about" the number she gave, or her name, finds the call and the report.
    rid = str(result.report_id)
    given = await subject_items(privacy, privacy.subjects.parse("070-123 45 67"))
    assert {("call", CALL, "report"), ("report", rid, "mentioned")} <= given
    name = await subject_items(privacy, Identifier("other", "name:anna berg"))
    assert name == {("call", CALL, "report"), ("report", rid, "key"), ("report", rid, "mentioned")}
    caller = await subject_items(privacy, privacy.subjects.parse(CALLER_ID))
    assert ("report", rid, "key") in caller


async def test_ciphertext_holds_no_plaintext(privacy: Privacy) -> None:
    await add_call(privacy)
    await writer(privacy, FakeModel([json.dumps(GOOD)])).report(CALL)
    row = await privacy.db.report_for_call(CALL)
    assert row is not None and bytes(row["report_enc"]).startswith(b"CVR1")
    await privacy.db.checkpoint()
    files = [privacy.cfg.database, Path(f"{privacy.cfg.database}-wal")]
    data = b"".join(p.read_bytes() for p in files if p.exists())
    assert b"report_enc" in data  # the table is there: the scan reads the right file
    for needle in (b"Anna Berg", b"Berg", b"Tuesday", b"appointment for next", b"701234567"):
        assert needle not in data, needle


async def test_invalid_json_then_valid_retries_with_other_sampling(privacy: Privacy) -> None:
    await add_call(privacy)
    model = FakeModel(['{"purpose": "appointment", "caller_na', json.dumps(GOOD)])
    result = await writer(privacy, model).report(CALL)
    assert result.status == "ok" and result.attempts == 2
    assert result.errors == ("attempt 1: not JSON",)
    assert [(c["t"], c["seed"]) for c in model.calls] == [(0.0, 0), (0.5, 1)]


async def test_always_invalid_is_kept_for_review_never_dropped(privacy: Privacy) -> None:
    await add_call(privacy)
    bad = json.dumps({**GOOD, "purpose": "a chat", "need": None})
    result = await writer(privacy, FakeModel([bad, "not json at all", bad])).report(CALL)
    assert result.status == "needs_review" and result.attempts == 3 and result.report is None
    assert len(result.errors) == 3
    assert result.errors[1] == "attempt 2: not JSON"
    assert "$.purpose: enum" in result.errors[2] and "$.need: type" in result.errors[2]
    # Stored, with the last attempt for the reviewer; flagged with a reason free of her data.
    view = await ReportVault(privacy.db, privacy).read_report(CALL, OPERATOR, "review")
    assert view.status == "needs_review" and view.report is None
    assert view.candidate["caller_name"] == "Anna Berg"
    assert view.review_id == result.review_id is not None
    item = await privacy.review.get(result.review_id)
    assert (item.kind, item.ref, item.call_id, item.status) == (
        "report", f"report:{result.report_id}", CALL, "open",
    )  # fmt: skip
    assert "3 attempt(s)" in item.reason and "Anna" not in item.reason
    # A redo that still fails keeps the one open item and the report's id.
    again = await writer(privacy, FakeModel([bad])).report(CALL)
    assert again.report_id == result.report_id and again.review_id == result.review_id
    assert len(await privacy.review.items("open")) == 1
    # Errors and notes are stored in the clear: paths and rules only.
    row = await privacy.db.report_for_call(CALL)
    assert row is not None and "Anna" not in row["errors"] + row["notes"]


async def test_ungrounded_day_is_nulled(privacy: Privacy) -> None:
    await add_call(privacy)
    turns = [
        Turn("caller", 0.0, "Hello, I would like to book an appointment please.", "en"),
        Turn("agent", 2.0, "Of course, which day suits you?"),
        Turn("caller", 4.0, "I am not sure yet, I will call back.", "en"),
    ]
    said = {
        **GOOD,
        "caller_name": None,
        "contact": {"phone": None, "email": None},
        "need": "Hello, I would like to book an appointment please.",
        "appointment": {"day": "Friday", "date": None, "time": "afternoon"},
        "follow_up": None,
    }
    result = await writer(privacy, FakeModel([json.dumps(said)]), turns).report(CALL)
    assert result.status == "ok" and result.report is not None
    assert result.report["appointment"] == {"day": None, "date": None, "time": None}
    assert {"$.appointment.day", "$.appointment.time"} <= set(result.nulled)


async def test_ungrounded_day_is_replaced_by_the_one_the_caller_named(privacy: Privacy) -> None:
    await add_call(privacy)
    wrong = {**GOOD, "appointment": {"day": "Friday", "date": None, "time": "morning"}}
    result = await writer(privacy, FakeModel([json.dumps(wrong)])).report(CALL)
    assert result.report is not None and result.report["appointment"]["day"] == "Tuesday"
    assert "$.appointment.day" in result.nulled and "$.appointment.day" in result.filled


async def test_schema_from_the_line_file(privacy: Privacy, tmp_path: Path) -> None:
    await add_call(privacy, line="callback")
    out = {"topic": "book an appointment for next Tuesday", "phone": "070 123 45 67",
           "wants_callback": True}  # fmt: skip
    model = FakeModel([json.dumps(out)])
    result = await writer(privacy, model).report(CALL)
    assert result.status == "ok"
    assert result.report == {**out, "phone": "+46701234567"}
    row = await privacy.db.report_for_call(CALL)
    assert (
        row is not None and row["schema_id"] == CUSTOM_SCHEMA["$id"] and row["line"] == "callback"
    )
    # The grammar schema is the line's, with the phone pinned to the number the caller said.
    gen = model.calls[0]["schema"]
    assert gen["properties"]["phone"] == {"anyOf": [{"enum": ["+46701234567"]}, {"type": "null"}]}
    assert set(gen["required"]) == {"topic", "phone", "wants_callback"}
    # No worked example for a schema it does not fit: the fields' descriptions instead.
    prompt = model.calls[0]["messages"]
    assert len(prompt) == 2 and "topic: What the call was about." in prompt[-1]["content"]


def test_a_broken_line_schema_fails_at_start(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "object", "properties": {"x": {"type": "strin"}}}')
    with pytest.raises(ReportError, match=r"bad\.json: not a valid JSON Schema"):
        load_schema(bad)
    bad.write_text("{nope")
    with pytest.raises(ReportError, match=r"bad\.json: not JSON"):
        load_schema(bad)
    with pytest.raises(ReportError, match="cannot read"):
        load_schema(tmp_path / "missing.json")
    cfg = make_cfg(tmp_path, summary_schema=str(bad))
    db = Database(cfg.database)  # never opened: the schemas are read before any call
    with pytest.raises(ReportError, match=r"summary schema .*bad\.json"):
        ReportWriter(cfg, db, Privacy(cfg, db), lambda: FakeModel(["{}"]))


async def test_no_speech_or_no_model_is_stored_as_failed_and_flagged(privacy: Privacy) -> None:
    await add_call(privacy)
    silent = await writer(privacy, FakeModel(["{}"]), turns=[]).report(CALL)
    assert (silent.status, silent.attempts, silent.errors) == (
        "failed", 0, ("no speech in the transcript",),
    )  # fmt: skip
    assert silent.review_id is not None

    def missing() -> FakeModel:
        raise ModelError("model smollm2-135m (llm) is unusable: not installed")

    source = Turns({CALL: TURNS})
    w = ReportWriter(privacy.cfg, privacy.db, privacy, missing, source)
    result = await w.report(CALL)
    assert result.status == "failed" and result.errors == ("model unavailable: ModelError",)
    view = await ReportVault(privacy.db, privacy).read_report(CALL, OPERATOR, "review")
    assert view.status == "failed" and view.model == ""


async def test_unknown_call_is_an_error(privacy: Privacy) -> None:
    with pytest.raises(ReportError, match=r"call 1\.2 is not stored"):
        await writer(privacy, FakeModel(["{}"])).report("1.2")
    with pytest.raises(ReportError, match="has no report"):
        await ReportVault(privacy.db, privacy).read_report(CALL, OPERATOR, "x")


# ---- retention, erasure, access
async def test_deleting_a_report_drops_the_subjects_only_it_named(privacy: Privacy) -> None:
    await add_call(privacy)
    result = await writer(privacy, FakeModel([json.dumps(GOOD)])).report(CALL)
    index = privacy.keyring.blind_index
    named = await index(Identifier("other", "name:anna berg"))
    assert await privacy.db.subject_by_index(named) is not None
    assert await privacy.db.delete_reports([result.report_id]) == 1
    assert await privacy.db.report_for_call(CALL) is None
    assert await privacy.db.subject_by_index(named) is None  # her name's key is shredded
    assert (
        await privacy.db.subject_by_index(await index(privacy.subjects.parse("0701234567"))) is None
    )
    # The caller's own subject stays with the call (its records are kept longer).
    caller = await subject_items(privacy, privacy.subjects.parse(CALLER_ID))
    assert caller == {("call", CALL, "caller")}
    assert await privacy.db.delete_reports([result.report_id]) == 0  # idempotent


async def test_erasure_deletes_the_report_and_shreds_what_it_named(privacy: Privacy) -> None:
    await add_call(privacy)
    await add_call(privacy, "1700000001.1")  # her other call: held, keeps its report
    first = await writer(privacy, FakeModel([json.dumps(GOOD)])).report(CALL)
    source = Turns({"1700000001.1": TURNS})
    w = ReportWriter(
        privacy.cfg, privacy.db, privacy, lambda: FakeModel([json.dumps(GOOD)]), source
    )
    held = await w.report("1700000001.1")
    rights = Rights(privacy)
    await rights.holds.on_calls(["1700000001.1"], OP, reason="dispute 7", owner="legal")
    rid = await done(rights, "erasure", CALLER_ID)
    resp = (await rights.get(rid)).response
    assert resp["deleted"]["reports"] == 1 and resp["kept_under_legal_hold"]["reports"] == 1
    assert await privacy.db.reports_by_ids([first.report_id]) == []
    assert [r["id"] for r in await privacy.db.reports_by_ids([held.report_id])] == [held.report_id]
    view = await ReportVault(privacy.db, privacy).read_report("1700000001.1", OP, "legal claim")
    assert view.report is not None and view.report["caller_name"] == "Anna Berg"


async def test_erasure_without_hold_shreds_every_copy(privacy: Privacy) -> None:
    await add_call(privacy)
    result = await writer(privacy, FakeModel([json.dumps(GOOD)])).report(CALL)
    row = await privacy.db.report_for_call(CALL)
    assert row is not None
    rights = Rights(privacy)
    await done(rights, "erasure", CALLER_ID)
    assert await privacy.db.report_for_call(CALL) is None
    # A copy of the row (a backup) no longer opens: the keys it was sealed under are gone.
    with pytest.raises(KeyShreddedError):
        await ReportVault(privacy.db, privacy).open_row(row)
    named = await privacy.keyring.blind_index(Identifier("other", "name:anna berg"))
    assert await privacy.db.subject_by_index(named) is None
    assert result.report_id not in {int(r["id"]) for r in await privacy.db.reports_by_ids([1, 2])}


async def test_access_export_holds_the_decrypted_report(privacy: Privacy) -> None:
    await add_call(privacy)
    await writer(privacy, FakeModel([json.dumps(GOOD)])).report(CALL)
    rights = Rights(privacy)
    rid = await done(rights, "access", "070 123 45 67")  # the number she gave, not her line
    req = await rights.get(rid)
    doc = json.loads(zipfile.ZipFile(req.export_path).read("records.json"))
    jsonschema.validate(doc, export_schema())
    assert [r["report"]["caller_name"] for r in doc["reports"]] == ["Anna Berg"]
    assert [c["id"] for c in doc["calls"]] == [CALL]
    actions = [r["action"] for r in await privacy.db.audit_rows()]
    assert "report.export" in actions


async def test_cli_show_prints_the_report_and_audits(privacy: Privacy) -> None:
    await add_call(privacy)
    await writer(privacy, FakeModel([json.dumps(GOOD)])).report(CALL)
    console = Console(record=True, width=120)

    class Args:
        call_id = CALL
        purpose = "callback"
        json = False

    assert await report_cli.show(Args(), privacy.cfg, privacy, console) == 0  # type: ignore[arg-type]
    text = console.export_text()
    assert "ok after 1 attempt(s)" in text and '"day": "Tuesday"' in text
    views = [r for r in await privacy.db.audit_rows() if r["action"] == "report.view"]
    assert [(v["purpose"], v["role"]) for v in views] == [("callback", "operator")]


# ---- the real model
async def test_real_model_report_names_the_requested_day(privacy: Privacy) -> None:
    # `make test` installs the models first: a missing one fails here, it never skips.
    model = load_report_model(privacy.cfg)
    await add_call(privacy)
    t0 = time.monotonic()
    result = await writer(privacy, model).report(CALL)
    took = time.monotonic() - t0
    print(f"smollm2-135m report: {result.status} in {took:.1f}s, {result.attempts} attempt(s)")
    assert result.status == "ok", result.errors
    assert result.report is not None
    jsonschema.validate(result.report, default_schema())
    assert result.report["appointment"]["day"] == "Tuesday"
    # The model itself chose the day (the facts only fill a gap it leaves).
    assert "$.appointment.day" not in result.filled
    assert result.report["caller_name"] == "Anna Berg"
    assert result.report["contact"]["phone"] == "+46701234567"
    assert result.report["opt_out"] is False
    view = await ReportVault(privacy.db, privacy).read_report(CALL, OPERATOR, "test")
    assert view.report == result.report and view.model == "smollm2-135m"


async def test_reads_the_stored_transcripts_audited(privacy: Privacy) -> None:
    """The default source: the call's stored transcripts (one per leg), merged by time."""
    from appliance.voice.transcripts import Segment, Transcript, TranscriptVault

    await add_call(privacy)
    vault = TranscriptVault(privacy.db, privacy)
    subjects = await privacy.subjects.call_key_subjects(CALL)
    legs = {"caller": [(3.2, ASK)], "callee": [(0.0, GREETING), (11.0, REPLY)]}
    for leg, segs in legs.items():
        t = Transcript(
            call_id=CALL, line="reception", leg=leg, language="en", language_prob=0.99,
            model="whisper-base", duration_s=20.0,
            segments=tuple(Segment(start, start + 3, text) for start, text in segs),
        )  # fmt: skip
        await vault.store(t, recording_id=None, subject_ids=subjects, actor=OP)
    model = FakeModel([json.dumps(GOOD)])
    w = ReportWriter(privacy.cfg, privacy.db, privacy, lambda: model)
    result = await w.report(CALL)
    assert result.status == "ok"
    prompt = model.calls[0]["messages"][-1]["content"]
    assert prompt.index(f"Agent: {GREETING}") < prompt.index(f"Caller: {ASK}")
    assert prompt.index(f"Caller: {ASK}") < prompt.index(f"Agent: {REPLY}")
    reads = [r for r in await privacy.db.audit_rows() if r["action"] == "transcript.view"]
    assert len(reads) == 2 and {r["purpose"] for r in reads} == {"post-call report"}
    assert {r["actor"] for r in reads} == {"report"}
