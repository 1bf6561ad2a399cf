"""The post-call AI report: the call's transcript summarised by the local LLM into JSON that
validates against the line's schema, checked against what the caller actually said.

    transcript ─► facts (rules: days, dates, times, numbers, addresses, name, opt-out)
              └─► LLM, grammar-constrained to the *narrowed* schema ─► JSON
                    ─► grounded (unsupported values nulled, unambiguous gaps filled)
                    ─► validated against the line's schema (jsonschema)
    failure (bad JSON, invalid, a required value unsupported) ─► retry, other sampling
    still failing after MAX_ATTEMPTS ─► stored as `needs_review` and flagged for a person

A report is never dropped: one that cannot be written at all (no speech, no model) is stored
as `failed` and flagged too. Reports are sealed under the data keys of the call's subjects and
of the subjects the report names (linked to the call), so erasing any of them shreds it; every
read is audited (`report.view`, `report.export`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Protocol, cast

from jsonschema import exceptions as schema_errors
from jsonschema import validators

from appliance.config import Config, LineConfig
from appliance.errors import CallvaultError
from appliance.models.manifest import ModelError
from appliance.privacy import Actor, Identifier, IdentifierError, Privacy, crypto, identifiers
from appliance.store import Database
from appliance.store.reports import ReportRow
from appliance.voice import report_dialogue, report_model
from appliance.voice.report_facts import Facts, Turn, extract
from appliance.voice.report_ground import KINDS, ground, narrow
from appliance.voice.report_model import ReportModel

__all__ = [
    "ReportError",
    "ReportResult",
    "ReportVault",
    "ReportView",
    "ReportWriter",
    "TranscriptSource",
    "Turn",
    "VaultTranscripts",
    "default_writer",
]

log = logging.getLogger(__name__)

Status = Literal["ok", "needs_review", "failed"]
MAX_ATTEMPTS = 3
# Greedy first (the likeliest report), then warmer and with other seeds: a retry that samples
# the same way would repeat the same mistake.
SAMPLING = ((0.0, 0), (0.5, 1), (0.9, 2), (0.7, 3), (1.0, 4))
MAX_TOKENS = 600
MAX_CANDIDATE_CHARS = 4000
FORMAT = b"CVR1"
SALT_BYTES = 32
PURPOSE = "post-call report"
DEFAULT_SCHEMA = "report_schema.json"
_SAFE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,40}$")


class ReportError(CallvaultError):
    pass


class TranscriptSource(Protocol):
    """Where the writer reads a call's words from (appliance.voice.transcripts via
    `VaultTranscripts`; tests give turns directly)."""

    async def turns(self, call_id: str) -> list[Turn]: ...


@dataclass(frozen=True)
class ReportResult:
    call_id: str
    report_id: int
    status: Status
    attempts: int
    report: dict[str, Any] | None
    """The validated report (`ok`); for `needs_review`/`failed`, None (see the stored row)."""
    review_id: int | None
    errors: tuple[str, ...] = ()
    nulled: tuple[str, ...] = ()
    filled: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReportView:
    id: int
    call_id: str
    line: str
    created_at: float
    status: Status
    attempts: int
    schema_id: str
    model: str
    errors: list[str]
    notes: dict[str, Any]
    review_id: int | None
    report: dict[str, Any] | None
    candidate: Any
    """For a report that did not validate: the last attempt (grounded JSON, or raw text)."""

    def doc(self) -> dict[str, Any]:
        """What `reports show` prints and an access export holds."""
        return {
            "id": self.id,
            "call_id": self.call_id,
            "line": self.line,
            "created_at": self.created_at,
            "status": self.status,
            "attempts": self.attempts,
            "schema_id": self.schema_id,
            "model": self.model,
            "errors": self.errors,
            "review_id": self.review_id,
            "report": self.report,
            "candidate": self.candidate,
        }


# ---- schemas
def default_schema() -> dict[str, Any]:
    text = resources.files("appliance.voice").joinpath(DEFAULT_SCHEMA).read_text()
    return dict(json.loads(text))


def load_schema(path: Path | None) -> tuple[dict[str, Any], str]:
    """(schema, its id) of a line's `summary_schema` (None: the built-in default)."""
    if path is None:
        schema = default_schema()
        return schema, str(schema["$id"])
    try:
        text = path.read_text()
        schema = json.loads(text)
    except OSError as exc:
        raise ReportError(f"summary schema {path}: cannot read it ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise ReportError(f"summary schema {path}: not JSON ({exc})") from None
    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise ReportError(f"summary schema {path}: the report must be a JSON object schema")
    try:
        validators.validator_for(schema).check_schema(schema)
    except schema_errors.SchemaError as exc:
        raise ReportError(
            f"summary schema {path}: not a valid JSON Schema ({exc.message})"
        ) from None
    sid = schema.get("$id") or "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]
    return schema, str(sid)


def _path(parts: Sequence[Any]) -> str:
    out = "$"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p if _SAFE_KEY.match(str(p)) else '?'}"
    return out


def schema_problems(schema: dict[str, Any], doc: Any) -> list[str]:
    """Where and which rule `doc` breaks, without quoting any value (they are personal data)."""
    cls = validators.validator_for(schema)
    errors = sorted(cls(schema).iter_errors(doc), key=lambda e: list(e.absolute_path))
    return [f"{_path(list(e.absolute_path))}: {e.validator}" for e in errors[:8]]


# ---- sealing and reading
def _context(call_id: str) -> str:
    return f"report:{call_id}"


class ReportVault:
    """Reports at rest: sealing, opening and audited reads (no model needed)."""

    def __init__(self, db: Database, privacy: Privacy) -> None:
        self.db = db
        self.privacy = privacy

    async def seal(
        self, call_id: str, envelope: Mapping[str, Any], subjects: Sequence[int]
    ) -> bytes:
        salt = os.urandom(SALT_BYTES)
        ctx = _context(call_id)
        key = await self.privacy.keyring.file_key(subjects, salt, ctx)
        body = json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode()
        return FORMAT + salt + crypto.seal(key, body, ctx.encode())

    async def open_row(self, row: Mapping[str, Any]) -> ReportView:
        """Decrypt a stored row (not audited: callers audit the read they make)."""
        blob = bytes(row["report_enc"])
        what = f"report {row['id']}"
        if blob[: len(FORMAT)] != FORMAT:
            raise ReportError(f"{what}: unknown storage format")
        salt = blob[len(FORMAT) : len(FORMAT) + SALT_BYTES]
        ctx = _context(str(row["call_id"]))
        subjects = [int(s) for s in str(row["key_subjects"]).split(",") if s]
        key = await self.privacy.keyring.file_key(subjects, salt, ctx)
        envelope = json.loads(
            crypto.open_sealed(key, blob[len(FORMAT) + SALT_BYTES :], ctx.encode(), what)
        )
        return ReportView(
            id=int(row["id"]),
            call_id=str(row["call_id"]),
            line=str(row["line"]),
            created_at=float(row["created_at"]),
            status=cast(Status, row["status"]),
            attempts=int(row["attempts"]),
            schema_id=str(row["schema_id"]),
            model=str(row["model"]),
            errors=list(json.loads(row["errors"])),
            notes=dict(json.loads(row["notes"])),
            review_id=None if row["review_id"] is None else int(row["review_id"]),
            report=envelope.get("report"),
            candidate=envelope.get("candidate"),
        )

    async def read_rows(
        self, rows: Sequence[Mapping[str, Any]], *, actor: Actor, purpose: str, action: str
    ) -> list[ReportView]:
        if not purpose.strip():
            raise ReportError("reading a report needs a purpose (it is audited)")
        out = []
        for row in rows:
            # Audited before it is opened, like a recording or transcript read.
            await self.privacy.audit.record(actor, action, f"report:{row['id']}", purpose)
            out.append(await self.open_row(row))
        return out

    async def read_report(
        self, call_id: str, actor: Actor, purpose: str, *, action: str = "report.view"
    ) -> ReportView:
        """The call's report, decrypted; the read is audited. ReportError if there is none."""
        row = await self.db.report_for_call(call_id)
        if row is None:
            raise ReportError(f"call {call_id} has no report")
        return (await self.read_rows([row], actor=actor, purpose=purpose, action=action))[0]


class VaultTranscripts:
    """`TranscriptSource` over the stored transcripts: legs merged into turns by time, each
    read audited as `transcript.view` for the report."""

    def __init__(self, db: Database, privacy: Privacy, actor: Actor) -> None:
        from appliance.voice.transcripts import TranscriptVault

        self.vault = TranscriptVault(db, privacy)
        self.actor = actor

    async def turns(self, call_id: str) -> list[Turn]:
        transcripts = await self.vault.read(call_id, actor=self.actor, purpose=PURPOSE)
        turns = [
            Turn(
                speaker={"callee": "agent"}.get(t.leg, t.leg),
                start=s.start,
                text=s.text.strip(),
                language=t.language,
            )
            for t in transcripts
            for s in t.segments
            if s.text.strip()
        ]
        return sorted(turns, key=lambda t: t.start)


# ---- the writer
@dataclass
class _Attempts:
    errors: list[str] = field(default_factory=list)
    candidate: Any = None
    nulled: list[str] = field(default_factory=list)
    filled: list[str] = field(default_factory=list)


class ReportWriter:
    """Writes, checks, stores and (when it has to) flags a call's report.

    `model_factory` is called once, on the first report, so a process that never writes one
    never loads the model; a ModelError then stores the report as `failed` (flagged).
    """

    def __init__(
        self,
        cfg: Config,
        db: Database,
        privacy: Privacy,
        model_factory: Callable[[], ReportModel],
        transcripts: TranscriptSource | None = None,
        *,
        actor: Actor | None = None,
        attempts: int = MAX_ATTEMPTS,
    ) -> None:
        if attempts < 1:
            raise ValueError("a report needs at least one attempt")
        self.cfg = cfg
        self.db = db
        self.privacy = privacy
        self.actor = actor or Actor.system("report")
        self.transcripts = transcripts or VaultTranscripts(db, privacy, self.actor)
        self.vault = ReportVault(db, privacy)
        self.attempts = attempts
        self._factory = model_factory
        self._model: ReportModel | None = None
        self._model_lock = asyncio.Lock()
        # Every line's schema is read now: a broken schema file is a config error at start,
        # not a report that fails after every call.
        self._schemas = {ln.name: load_schema(ln.summary_schema) for ln in cfg.lines}
        self._default = load_schema(None)

    def schema_for(self, line: str | None) -> tuple[dict[str, Any], str]:
        return self._schemas.get(line or "", self._default)

    async def model(self) -> ReportModel:
        async with self._model_lock:
            if self._model is None:
                self._model = await asyncio.to_thread(self._factory)
            return self._model

    async def report(self, call_id: str) -> ReportResult:
        """Write the call's report (replacing an earlier one) and store it; see module doc."""
        call = await self.db.call(call_id)
        if call is None:
            raise ReportError(f"call {call_id} is not stored (no CDR yet, or erased)")
        line = self.cfg.line_by_name(call.line or "")
        schema, schema_id = self.schema_for(call.line)
        turns = await self.transcripts.turns(call_id)
        facts = extract(turns, region=self.cfg.privacy.default_region, started_at=call.started_at)
        if facts.language is None and line is not None and line.language != "auto":
            facts = _with_language(facts, line.language)
        tries = _Attempts()
        report: dict[str, Any] | None = None
        model_name = ""
        attempts = 0
        from_slots = await self._from_dialogue(call_id, schema, schema_id, facts.language)
        if from_slots is not None:
            report, model_name, attempts = from_slots, report_dialogue.MODEL, 1
        elif not facts.caller_text.strip():
            tries.errors.append("no speech in the transcript")
        else:
            try:
                model = await self.model()
                model_name = model.name
            except ModelError as exc:
                log.warning("report of call %s: no model: %s", call_id, exc)
                tries.errors.append("model unavailable: " + type(exc).__name__)
            else:
                report, attempts = await self._generate(
                    model, turns=turns, schema=schema, schema_id=schema_id, facts=facts, tries=tries
                )
        status: Status = "ok" if report is not None else "needs_review" if attempts else "failed"
        return await self._store(
            call_id,
            line=line,
            schema_id=schema_id,
            model_name=model_name,
            status=status,
            attempts=attempts,
            report=report,
            tries=tries,
        )

    async def _from_dialogue(
        self, call_id: str, schema: dict[str, Any], schema_id: str, language: str | None
    ) -> dict[str, Any] | None:
        """The report from the playbook engine's slots (issue 10), when a playbook ran on the
        call and the line uses the default schema; None: the LLM writes it."""
        from appliance.voice.dialogue.calendar import StoreCalendar

        if schema_id != self._default[1]:
            return None
        outcome = await StoreCalendar(self.db, self.privacy).outcome(call_id)
        if outcome is None or outcome.get("erased"):
            return None
        report = report_dialogue.report_from_dialogue(outcome, language=language or "en")
        problems = schema_problems(schema, report)
        if problems:
            log.warning("report of call %s from the dialogue: %s", call_id, "; ".join(problems))
            return None
        return report

    async def _generate(
        self,
        model: ReportModel,
        *,
        turns: Sequence[Turn],
        schema: dict[str, Any],
        schema_id: str,
        facts: Facts,
        tries: _Attempts,
    ) -> tuple[dict[str, Any] | None, int]:
        region = self.cfg.privacy.default_region
        gen_schema = narrow(schema, facts)
        prompt = report_model.messages(
            [(t.speaker, t.text) for t in turns],
            schema,
            example=schema_id == self._default[1],
        )
        for n in range(1, self.attempts + 1):
            temperature, seed = SAMPLING[(n - 1) % len(SAMPLING)]
            try:
                raw = await asyncio.to_thread(
                    model.generate,
                    prompt,
                    gen_schema,
                    temperature=temperature,
                    seed=seed + (n - 1) // len(SAMPLING) * 100,
                    max_tokens=MAX_TOKENS,
                )
            except (RuntimeError, ValueError, OSError) as exc:
                tries.errors.append(f"attempt {n}: generation failed ({type(exc).__name__})")
                continue
            try:
                parsed = json.loads(raw)
            except json.JSONDecodeError:
                tries.errors.append(f"attempt {n}: not JSON")
                tries.candidate = raw[:MAX_CANDIDATE_CHARS]
                continue
            checked = ground(parsed, schema, facts, region=region)
            tries.candidate = checked.report
            problems = schema_problems(schema, checked.report)
            if problems:
                why = "; ".join(
                    p + (" (unsupported by the transcript)" if p.split(":")[0] in checked.nulled
                         else "")
                    for p in problems
                )  # fmt: skip
                tries.errors.append(f"attempt {n}: {why}")
                continue
            tries.nulled, tries.filled = checked.nulled, checked.filled
            return dict(checked.report), n
        return None, self.attempts

    async def _store(
        self,
        call_id: str,
        *,
        line: LineConfig | None,
        schema_id: str,
        model_name: str,
        status: Status,
        attempts: int,
        report: dict[str, Any] | None,
        tries: _Attempts,
    ) -> ReportResult:
        envelope: dict[str, Any] = {"report": report}
        if report is None:
            envelope["candidate"] = tries.candidate
        mentioned = await self._mentioned(report if report is not None else tries.candidate)
        own = await self.db.call_own_subject_ids(call_id)
        if not own:  # a call that names nobody still needs a key that erasure can shred
            own = [await self.privacy.subjects.ensure(Identifier("call", call_id))]
        key_subjects = list(dict.fromkeys([*own, *mentioned]))
        row = ReportRow(
            call_id=call_id,
            line=line.name if line is not None else "",
            created_at=time.time(),
            status=status,
            attempts=attempts,
            schema_id=schema_id,
            model=model_name,
            report_enc=await self.vault.seal(call_id, envelope, key_subjects),
            key_subjects=",".join(map(str, key_subjects)),
            errors=json.dumps(tries.errors),
            notes=json.dumps({"nulled": tries.nulled, "filled": tries.filled}),
        )
        audit = await self.privacy.audit.entry(
            self.actor,
            "report.create",
            "report",
            PURPOSE,
            f"call={call_id} status={status} attempts={attempts}",
        )
        report_id = await self.db.save_report(row, mentioned, audit)
        review_id = None
        if status != "ok":
            review_id = await self._flag(
                report_id, call_id, status=status, attempts=attempts, errors=tries.errors
            )
        log.info("report of call %s: %s after %d attempt(s)", call_id, status, attempts)
        return ReportResult(
            call_id=call_id,
            report_id=report_id,
            status=status,
            attempts=attempts,
            report=report,
            review_id=review_id,
            errors=tuple(tries.errors),
            nulled=tuple(tries.nulled),
            filled=tuple(tries.filled),
        )

    async def _flag(
        self, report_id: int, call_id: str, *, status: Status, attempts: int, errors: list[str]
    ) -> int:
        ref = f"report:{report_id}"
        review = self.privacy.review
        open_items = await review.items("open", ref=ref)
        if open_items:  # a redo of a report still waiting for a person: one item is enough
            review_id = open_items[0].id
        else:
            last = errors[-1] if errors else "unknown"
            reason = (
                f"report {status.replace('_', ' ')} after {attempts} attempt(s); last: {last}"
            )[:400]
            review_id = await review.flag("report", ref, reason, call_id=call_id, actor=self.actor)
        await self.db.set_report_review(report_id, review_id)
        return review_id

    async def _mentioned(self, report: Any) -> list[int]:
        """Subjects for the names, numbers and addresses the (grounded) report holds."""
        found: list[Identifier] = []
        region = self.cfg.privacy.default_region

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                for key, value in node.items():
                    kind = KINDS.get(key)
                    if isinstance(value, str) and kind in {"name", "phone", "email"}:
                        ident = _identifier(kind, value, region)
                        if ident is not None:
                            found.append(ident)
                    else:
                        walk(value)
            elif isinstance(node, list):
                for item in node:
                    walk(item)

        walk(report)
        return list(dict.fromkeys([await self.privacy.subjects.ensure(i) for i in found]))


def default_writer(cfg: Config, db: Database, privacy: Privacy) -> ReportWriter:
    """The writer the post-call pipeline uses: stored transcripts in, the active profile's
    LLM loaded on the first report (one thread: live calls keep the other core)."""
    from appliance.voice.report_model import load_report_model

    return ReportWriter(cfg, db, privacy, lambda: load_report_model(cfg))


def _identifier(kind: str, value: str, region: str) -> Identifier | None:
    try:
        if kind == "phone":
            return identifiers.phone(value, region)
        if kind == "email":
            return identifiers.email(value)
    except IdentifierError:
        return None
    name = " ".join(value.split()).casefold()
    # Kind `other`, tagged, so a name never shares a blind index with a SIP user name.
    return Identifier("other", f"name:{name}") if name else None


def _with_language(facts: Facts, language: str) -> Facts:
    return replace(facts, language=language)
