"""Synthetic call data for the privacy benchmarks: N calls (default 1 M) made with the real keys.

What a busy appliance holds after three years (the CDR retention period) of ~900 calls a day:

- ~N/20 external numbers (E.164, valid per `phonenumbers`, mostly Swedish, some Nordic, German,
  British, US and Polish), delivered as caller ID in the forms trunks use ("070…", "+4670…",
  "0049…"); how often each calls is log-normal (median ~10 calls, a tail of busy callers).
- calls inbound to the agent lines, outbound from them, and internal between desk phones;
  answered or not; some transferred by the agent to an extension (a second CDR).
- one subject per person identifier, made by the real `Keyring` (blind index, identifier sealed
  under a fresh data key wrapped under the master key), linked to every call it appears on as
  `Subjects.add_cdr` would link it.
- recordings only for a sample of answered calls of the last 90 days (older audio would have
  been purged by then), as small but real encrypted files (the `stream` format, file keys from
  `Keyring.file_key`), and consent records for the calls on the consent line.

The rows go in through `Database.bulk_insert` (appliance.store.bulk) in large transactions.
A generated store is cached under /var/cache/callvault/bench/ keyed on the generator version,
N, the seed and a digest of the migrations; benchmarks work on a copy (`working_copy`).
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import io
import json
import os
import shutil
import tempfile
import time
import tomllib
import wave
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import phonenumbers
from rich.progress import Progress

from appliance import config
from appliance.config import Config
from appliance.privacy import Privacy, stream
from appliance.privacy import identifiers as ids
from appliance.store import Database
from appliance.telephony.recordings import context as recording_context

GENERATOR_VERSION = 1
REPO = Path(__file__).resolve().parents[1]
CACHE_ROOT = Path("/var/cache/callvault/bench")
# The newest call of a generated store; fixed so that two runs generate the same data.
END_AT = datetime(2026, 10, 1, tzinfo=UTC).timestamp()
DAY = 86400.0
CHUNK = 50_000  # calls per transaction
RATE = 8000  # recordings: 8 kHz mono 16-bit WAV, as MixMonitor writes them

# (region, share of the numbers); numbers are mobile or fixed line, ~2:1.
COUNTRIES = (
    ("SE", 0.70), ("NO", 0.05), ("DK", 0.05), ("FI", 0.04), ("DE", 0.05), ("GB", 0.04),
    ("US", 0.04), ("PL", 0.03),
)  # fmt: skip
FIRST = (
    "Anna", "Erik", "Maria", "Lars", "Karin", "Johan", "Sara", "Anders", "Emma", "Per",
    "Elin", "Nils", "Ingrid", "Oskar", "Lena", "Mikael", "Fatima", "Ahmed", "Olga", "Jan",
    "Sofia", "Magnus", "Hanna", "Piotr", "Kerstin", "David", "Amira", "Thomas", "Eva", "Ali",
)  # fmt: skip
LAST = (
    "Andersson", "Johansson", "Karlsson", "Nilsson", "Eriksson", "Larsson", "Olsson",
    "Persson", "Svensson", "Gustafsson", "Pettersson", "Jonsson", "Hansen", "Virtanen",
    "Schmidt", "Smith", "Kowalski", "Lindqvist", "Berg", "Holm", "Hussein", "Novak",
)  # fmt: skip
CONSENT_PROMPT = "This call may be recorded. Press 1 or say yes to agree."


@dataclass(frozen=True)
class Spec:
    calls: int = 1_000_000
    seed: int = 20261001
    span_days: int = 3 * 365
    """Calls spread over the CDR retention period (older ones a steady state has purged)."""
    recording_days: int = 90
    """Only calls this recent still have audio (the recording retention)."""
    recorded_share: float = 0.05
    """Of the answered calls on recording lines in that window: those with an audio file."""
    numbers_per_call: float = 0.05
    """Distinct external numbers per call: 50 k at 1 M calls."""

    @property
    def numbers(self) -> int:
        return max(20, round(self.calls * self.numbers_per_call))

    def key(self, schema: str) -> str:
        return f"synth-v{GENERATOR_VERSION}-n{self.calls}-seed{self.seed}-schema-{schema}"


@dataclass
class Summary:
    spec: Spec
    end_at: float
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> str:
        return json.dumps(
            {**asdict(self), "generator_version": GENERATOR_VERSION}, indent=2, sort_keys=True
        )

    @classmethod
    def load(cls, path: Path) -> Summary:
        raw = json.loads(path.read_text())
        return cls(Spec(**raw["spec"]), raw["end_at"], raw["counts"], raw["seconds"])


def synth_config(state_dir: Path) -> Config:
    """The dev config (lines, extensions, region) with its state in `state_dir`."""
    dev = REPO / "config" / "callvault.dev.toml"
    raw = tomllib.loads(dev.read_text())
    raw["state_dir"] = str(state_dir)
    return config.parse(raw, base_dir=dev.parent, source=dev)


def schema_key() -> str:
    """Names the schema a store is generated at: a digest of every migration's text, so a
    migration added or still being edited makes a fresh store rather than a stale one."""
    digest = hashlib.sha256()
    entries = resources.files("appliance.store.migrations").iterdir()
    for entry in sorted((e for e in entries if e.name.endswith(".sql")), key=lambda e: e.name):
        digest.update(entry.name.encode() + b"\0" + entry.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


# ---- people


@dataclass(frozen=True)
class Number:
    e164: str
    forms: tuple[str, str]
    """Caller ID as trunks deliver it: the usual form, and the other one (10 % of calls)."""
    name: str


def _numbers(rng: np.random.Generator, count: int, region: str) -> list[Number]:
    regions = [c for c, _ in COUNTRIES]
    shares = np.array([s for _, s in COUNTRIES])
    picks = rng.choice(len(regions), size=count, p=shares / shares.sum())
    mobile = phonenumbers.PhoneNumberType.MOBILE
    fixed = phonenumbers.PhoneNumberType.FIXED_LINE
    seen: set[str] = set()
    out: list[Number] = []
    for idx in picks.tolist():
        cc = regions[idx]
        kind = mobile if rng.random() < 0.66 else fixed
        example = phonenumbers.example_number_for_type(cc, kind)
        nsn = phonenumbers.national_significant_number(example)
        keep = 2 if len(nsn) > 7 else 1
        for _ in range(200):
            digits = nsn[:keep] + "".join(rng.choice(list("0123456789"), len(nsn) - keep))
            parsed = phonenumbers.parse(f"+{example.country_code}{digits}", None)
            e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
            if e164 not in seen and phonenumbers.is_valid_number(parsed):
                break
        else:
            raise RuntimeError(f"no fresh valid {cc} number after 200 tries")
        seen.add(e164)
        national = "0" + digits if cc in {"SE", "FI", "DE", "GB"} else digits
        if cc == region:
            forms = (national, e164) if rng.random() < 0.7 else (e164, national)
        else:
            idd = f"00{example.country_code}{digits}"
            forms = (e164, idd) if rng.random() < 0.5 else (idd, e164)
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}" if rng.random() < 0.35 else ""
        out.append(Number(e164, forms, name))
    return out


def _check_forms(numbers: Sequence[Number], region: str, exts: Sequence[str]) -> None:
    # The links must be those the appliance would make: every form must normalise (through the
    # real parser) to the number's E.164.
    for n in numbers:
        for raw in n.forms:
            ident = ids.from_caller_id(raw, region, exts)
            if ident is None or ident.kind != "phone" or ident.value != n.e164:
                raise RuntimeError(f"caller ID {raw!r} does not normalise to {n.e164}: {ident}")


# ---- calls


@dataclass
class Plan:
    """Every call's random draws, as arrays in call (time) order."""

    start: np.ndarray[Any, np.dtype[np.float64]]
    direction: np.ndarray[Any, np.dtype[np.int64]]  # 0 inbound, 1 outbound, 2 internal
    line: np.ndarray[Any, np.dtype[np.int64]]  # index into cfg.lines, -1: none
    party: np.ndarray[Any, np.dtype[np.int64]]  # external number index, -1: none
    ext_a: np.ndarray[Any, np.dtype[np.int64]]  # extension index (internal caller)
    ext_b: np.ndarray[Any, np.dtype[np.int64]]  # extension index (callee / transfer target)
    alt_form: np.ndarray[Any, np.dtype[np.bool_]]
    answered: np.ndarray[Any, np.dtype[np.bool_]]
    busy: np.ndarray[Any, np.dtype[np.bool_]]
    ring: np.ndarray[Any, np.dtype[np.float64]]
    talk: np.ndarray[Any, np.dtype[np.float64]]
    transfer: np.ndarray[Any, np.dtype[np.bool_]]
    consent: np.ndarray[Any, np.dtype[np.int64]]  # 0 given, 1 refused, 2 no answer
    recorded: np.ndarray[Any, np.dtype[np.bool_]]


def _plan(rng: np.random.Generator, spec: Spec, cfg: Config, weights: np.ndarray[Any, Any]) -> Plan:
    n = spec.calls
    lines = {ln.name: i for i, ln in enumerate(cfg.lines)}
    # Busier on weekdays and in office hours.
    days = np.arange(spec.span_days)
    weekday = (days + datetime.fromtimestamp(END_AT - spec.span_days * DAY, UTC).weekday()) % 7
    day_w = np.where(weekday < 5, 1.0, np.where(weekday == 5, 0.25, 0.12))
    day = rng.choice(spec.span_days, size=n, p=day_w / day_w.sum())
    office = rng.random(n) < 0.85
    hour = np.where(office, np.clip(rng.normal(12.5, 2.4, n), 7, 20), rng.uniform(0, 24, n))
    start = np.sort(END_AT - spec.span_days * DAY + day * DAY + hour * 3600.0)
    start = np.minimum(start, END_AT - 3600.0)

    direction = rng.choice(3, size=n, p=[0.70, 0.22, 0.08])
    inbound_lines = [("reception", 0.70), ("consent", 0.15), ("on-demand", 0.10)]
    inbound_lines += [("echo", 0.01), ("hello", 0.02), ("loadtest", 0.02)]
    in_idx = np.array([lines[name] for name, _ in inbound_lines])
    in_p = np.array([p for _, p in inbound_lines])
    line = np.where(
        direction == 0,
        in_idx[rng.choice(len(in_idx), size=n, p=in_p / in_p.sum())],
        np.where(rng.random(n) < 0.8, lines["reception"], lines["on-demand"]),
    )
    n_ext = len(cfg.extensions)
    ext_a = rng.integers(0, n_ext, n)
    ext_b = (ext_a + rng.integers(1, n_ext, n)) % n_ext  # never the caller itself
    # Internal calls: to another desk phone (no line) or, 30 %, to a line.
    internal_to_line = rng.random(n) < 0.3
    line = np.where((direction == 2) & ~internal_to_line, -1, line)
    withheld = (direction == 0) & (rng.random(n) < 0.03)
    party = np.where((direction == 2) | withheld, -1, rng.choice(len(weights), size=n, p=weights))
    agent_line = np.isin(line, [lines["reception"], lines["consent"], lines["on-demand"]])
    p_answer = np.select([direction == 0, direction == 1], [0.93, 0.62], 0.75)
    answered = rng.random(n) < p_answer
    busy = ~answered & (rng.random(n) < 0.2)
    ring = np.where(answered, rng.uniform(1, 8, n), rng.uniform(5, 30, n))
    talk = np.where(answered, np.clip(rng.lognormal(np.log(110), 0.9, n), 4, 3600), 0.0)
    transfer = answered & (direction == 0) & agent_line & (rng.random(n) < 0.08)
    consent = rng.choice(3, size=n, p=[0.8, 0.15, 0.05])
    recent = start >= END_AT - spec.recording_days * DAY
    records = np.array([bool(ln.record_legs) for ln in cfg.lines])
    on_line = line >= 0
    recorded = (
        recent
        & answered
        & on_line
        & records[np.maximum(line, 0)]
        & (rng.random(n) < spec.recorded_share)
        & ((line != lines["consent"]) | (consent == 0))
    )
    return Plan(
        start, direction, line, party, ext_a, ext_b, rng.random(n) < 0.1, answered, busy,
        ring, talk, transfer, consent, recorded,
    )  # fmt: skip


def _wav(rng: np.random.Generator, seconds: float) -> bytes:
    t = np.arange(int(RATE * seconds)) / RATE
    tone = 3000 * np.sin(2 * np.pi * rng.uniform(180, 400) * t) + rng.normal(0, 300, t.size)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(np.clip(tone, -32768, 32767).astype("<i2").tobytes())
    return buf.getvalue()


class _Calls:
    """Turns the plan into rows, chunk by chunk (tuples in BULK_COLUMNS order)."""

    def __init__(
        self, cfg: Config, plan: Plan, numbers: Sequence[Number], subject_of: dict[str, int]
    ) -> None:
        self.cfg = cfg
        self.plan = plan
        self.numbers = numbers
        self.subject_of = subject_of  # canonical identifier -> subject id
        self.lines = cfg.lines
        self.exts = [e.number for e in cfg.extensions]
        self.ext_names = [e.name for e in cfg.extensions]
        self.consent_line = next(i for i, ln in enumerate(cfg.lines) if ln.name == "consent")
        self.recorded: list[tuple[str, int, float, list[int]]] = []
        """(call id, line index, end, the call's subject ids) of calls with audio."""

    def rows(self, lo: int, hi: int, seq0: int) -> tuple[dict[str, list[tuple[Any, ...]]], int]:
        p = self.plan
        cols = {
            k: getattr(p, k)[lo:hi].tolist()
            for k in (
                "start", "direction", "line", "party", "ext_a", "ext_b", "alt_form", "answered",
                "busy", "ring", "talk", "transfer", "consent", "recorded",
            )
        }  # fmt: skip
        calls: list[tuple[Any, ...]] = []
        cdrs: list[tuple[Any, ...]] = []
        links: list[tuple[Any, ...]] = []
        consents: list[tuple[Any, ...]] = []
        seq = seq0
        for i in range(hi - lo):
            start = round(cols["start"][i], 3)
            direction = cols["direction"][i]
            li = cols["line"][i]
            line = self.lines[li] if li >= 0 else None
            party = cols["party"][i]
            number = self.numbers[party] if party >= 0 else None
            answered = cols["answered"][i]
            ring, talk = cols["ring"][i], cols["talk"][i]
            answer_at = round(start + ring, 3) if answered else None
            end = round(start + ring + talk, 3)
            call_id = f"{int(start)}.{seq}"
            ext_a, ext_b = self.exts[cols["ext_a"][i]], self.exts[cols["ext_b"][i]]
            raw = "" if number is None else number.forms[1 if cols["alt_form"][i] else 0]
            if direction == 0:
                kind, context = "inbound", "callvault-inbound"
                calling, name = (raw, number.name) if number else ("anonymous", "")
                dialed = line.extension if line else ""
                chan, dest = f"PJSIP/trunk-{seq:08x}", f"PJSIP/agent-{seq + 1:08x}"
            elif direction == 1:
                kind, context = "outbound", "callvault-lines"
                assert line is not None and number is not None
                calling, name, dialed = line.extension, line.name, raw
                chan, dest = f"PJSIP/agent-{seq:08x}", f"PJSIP/trunk-{seq + 1:08x}"
            else:
                kind, context = "internal", "callvault-internal"
                calling, name = ext_a, self.ext_names[cols["ext_a"][i]]
                dialed = line.extension if line else ext_b
                chan = f"PJSIP/{ext_a}-{seq:08x}"
                dest = f"PJSIP/agent-{seq + 1:08x}" if line else f"PJSIP/{ext_b}-{seq + 1:08x}"
            if answered:
                disp, cause, cause_text = "ANSWERED", 16, "Normal Clearing"
            elif cols["busy"][i]:
                disp, cause, cause_text = "BUSY", 17, "User busy"
            else:
                disp, cause, cause_text = "NO ANSWER", 19, "No answer"
            app = "Dial" if line is None or line.kind == "agent" else "Playback"
            app = "Echo" if line is not None and line.kind == "echo" else app
            line_name = line.name if line else None
            legs = [(seq, calling, name, dialed, context, start, answer_at, end, chan, dest, app)]
            if cols["transfer"][i]:
                # The agent hands the caller to a desk phone: a second CDR for the second leg.
                t_at = round(start + ring + talk * 0.6, 3)
                legs.append(
                    (seq + 2, calling, name, ext_b, "callvault-from-agent", t_at,
                     round(t_at + 4, 3), end, f"PJSIP/agent-{seq + 2:08x}",
                     f"PJSIP/{ext_b}-{seq + 3:08x}", "Dial")
                )  # fmt: skip
            calls.append(
                (call_id, line_name, kind, calling, name, dialed, start, answer_at, end, disp, "")
            )
            subjects: set[tuple[int, str]] = set()
            for n, (uq, c_from, c_name, c_to, ctx, s, a, e, ch, dch, la) in enumerate(legs):
                duration = int(e - s)
                billable = int(e - a) if a is not None else 0
                cdrs.append(
                    (call_id, f"{int(s)}.{uq}", n, c_from, c_name, c_to, ctx, kind, line_name,
                     s, a, e, duration, billable, disp, cause, cause_text, ch, dch, la, "ami",
                     round(e + 0.2, 3))
                )  # fmt: skip
                for value, role in ((c_from, "caller"), (c_to, "callee")):
                    sid = self._subject(value, number)
                    if sid is not None:
                        subjects.add((sid, role))
            links.extend((sid, "call", call_id, role, end) for sid, role in sorted(subjects))
            if li == self.consent_line and answered and direction == 0:
                decision = ("given", "refused", "no-answer")[cols["consent"][i]]
                method = "timeout" if decision == "no-answer" else ("dtmf", "speech")[i % 2]
                asked = round(answer_at + 1.5, 3) if answer_at else start
                consents.append(
                    (call_id, line_name, decision, method, CONSENT_PROMPT, asked,
                     round(asked + 4.0, 3))
                )  # fmt: skip
            if cols["recorded"][i]:
                self.recorded.append((call_id, li, end, sorted({s for s, _ in subjects})))
            seq += 4
        rows = {"calls": calls, "cdrs": cdrs, "subject_links": links, "consents": consents}
        return rows, seq

    def _subject(self, raw: str, number: Number | None) -> int | None:
        if number is not None and raw in number.forms:
            return self.subject_of[number.e164]
        if raw in self.exts:
            return self.subject_of[f"extension:{raw}"]
        return None  # a line (the box's own number) or a withheld caller


# ---- the generator


async def generate(spec: Spec, state_dir: Path, progress: Progress | None = None) -> Summary:
    """Generate a store for `spec` into `state_dir` (which must hold no database yet)."""
    t0 = time.monotonic()
    cfg = synth_config(state_dir)
    rng = np.random.default_rng(spec.seed)
    region = cfg.privacy.default_region
    exts = [e.number for e in cfg.extensions]
    if cfg.database.exists():
        raise FileExistsError(f"{cfg.database} exists: generate into an empty state directory")

    def task(name: str, total: int) -> int | None:
        return progress.add_task(name, total=total) if progress else None

    def advance(tid: int | None, by: int = 1) -> None:
        if progress is not None and tid is not None:
            progress.advance(tid, by)

    t_num = task("numbers (E.164)", 1)
    numbers = _numbers(rng, spec.numbers, region)
    _check_forms(numbers, region, exts)
    advance(t_num)
    weights = rng.lognormal(0.0, 1.2, len(numbers))
    plan = _plan(rng, spec, cfg, weights / weights.sum())

    async with Database(cfg.database) as db:
        await db.sync_lines([(ln.name, ln.extension, ln.kind, ln.record_legs) for ln in cfg.lines])
        await db.bulk_load_begin()
        privacy = Privacy(cfg, db)
        keyring = privacy.keyring
        # Subjects in order of first appearance, as the appliance would have created them.
        used = plan.party[plan.party >= 0]
        _, first = np.unique(used, return_index=True)
        order = used[np.sort(first)].tolist()
        span_start = END_AT - spec.span_days * DAY
        idents = [(ids.Identifier("extension", e), span_start) for e in exts]
        starts = plan.start[plan.party >= 0][np.sort(first)].tolist()
        idents += [
            (ids.Identifier("phone", numbers[i].e164), at)
            for i, at in zip(order, starts, strict=True)
        ]
        t_sub = task("subjects (keys, blind indexes)", len(idents))
        subject_of: dict[str, int] = {}
        rows: list[tuple[Any, ...]] = []
        for sid, (ident, created) in enumerate(idents, start=1):
            draft = await keyring.draft_subject(ident)
            rows.append(
                (sid, draft.kind, draft.blind_index, draft.value_enc, draft.wrapped_key,
                 draft.kek_id, created)
            )  # fmt: skip
            subject_of[ident.canonical] = sid
            if len(rows) >= CHUNK:
                await db.bulk_insert({"subjects": rows})
                advance(t_sub, len(rows))
                rows = []
        await db.bulk_insert({"subjects": rows})
        advance(t_sub, len(rows))

        gen = _Calls(cfg, plan, numbers, subject_of)
        t_calls = task("calls, CDRs, links, consents", spec.calls)
        seq = 1
        for lo in range(0, spec.calls, CHUNK):
            hi = min(lo + CHUNK, spec.calls)
            chunk, seq = gen.rows(lo, hi, seq)
            await db.bulk_insert(chunk)
            advance(t_calls, hi - lo)

        t_rec = task("recordings (encrypted files)", len(gen.recorded))
        next_sid = len(idents) + 1
        rec_id = 1
        for call_id, li, end, call_sids in gen.recorded:
            line = cfg.lines[li]
            new_subjects: list[tuple[Any, ...]] = []
            sids = call_sids
            if not sids:
                # A call that names nobody gets a subject of its own (`call_key_subjects`).
                draft = await keyring.draft_subject(ids.Identifier("call", call_id))
                new_subjects.append(
                    (next_sid, draft.kind, draft.blind_index, draft.value_enc,
                     draft.wrapped_key, draft.kek_id, end)
                )  # fmt: skip
                sids = [next_sid]
                next_sid += 1
                await db.bulk_insert({"subjects": new_subjects})
            recs, links = [], []
            for leg in line.record_legs:
                at = end + 1.0  # ingested at hangup
                recs.append(
                    await _recording(cfg, privacy, rng, rec_id, call_id, line.name, leg, sids, at)
                )
                links.extend((s, "recording", str(rec_id), "key", at) for s in sids)
                rec_id += 1
            await db.bulk_insert({"recordings": recs, "subject_links": links})
            advance(t_rec)
        await db.bulk_load_end()
        counts = await db.table_counts(
            ["subjects", "calls", "cdrs", "subject_links", "recordings", "consents"]
        )
    fd = os.open(cfg.database, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    summary = Summary(spec, END_AT, counts, round(time.monotonic() - t0, 1))
    (state_dir / "manifest.json").write_text(summary.to_json())
    return summary


async def _recording(
    cfg: Config,
    privacy: Privacy,
    rng: np.random.Generator,
    rec_id: int,
    call_id: str,
    line: str,
    leg: str,
    subjects: list[int],
    created_at: float,
) -> tuple[Any, ...]:
    """One leg's audio, encrypted as `RecordingStore` stores it, and its row."""
    wav = _wav(rng, float(rng.uniform(0.2, 1.0)))
    day = time.strftime("%Y/%m/%d", time.localtime(float(call_id)))
    dest = cfg.recordings_dir / day / f"{call_id}-{line}-{leg}.wav.cvae"
    salt = stream.new_salt()
    key = await privacy.keyring.file_key(subjects, salt, recording_context(call_id, line, leg))
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    # FileVault.encrypt fsyncs every file; a generated cache needs no per-file durability
    # (a failed generation is thrown away whole), so this writes the same format without it.
    with dest.open("wb") as fh:
        sealed = stream.encrypt_stream(io.BytesIO(wav), fh, key, salt)
    duration = round((len(wav) - 44) / (RATE * 2), 3)
    return (
        rec_id, call_id, line, leg, str(dest), "wav/slin8", duration, sealed.plain_bytes,
        sealed.sha256, "", created_at, stream.CIPHER, ",".join(map(str, subjects)),
        sealed.stored_bytes,
    )  # fmt: skip


# ---- the cache and working copies


def cached(spec: Spec, progress: Progress | None = None, root: Path = CACHE_ROOT) -> Path:
    """The state directory of a generated store for `spec`, generated on first use."""
    root.mkdir(parents=True, exist_ok=True)
    dest = root / spec.key(schema_key())
    with (root / ".lock").open("w") as lock:
        # One generator at a time: a second process waits and then finds the cache.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (dest / "manifest.json").exists():
            return dest
        part = Path(tempfile.mkdtemp(prefix=f"{dest.name}.part-", dir=root))
        try:
            asyncio.run(generate(spec, part, progress))
            shutil.rmtree(dest, ignore_errors=True)  # a half-removed older copy
            part.rename(dest)
        except BaseException:
            shutil.rmtree(part, ignore_errors=True)
            raise
        _prune(root, keep=dest)
    return dest


def _prune(root: Path, keep: Path, spare: int = 1) -> None:
    # Each store of 1 M calls takes about a gigabyte: keep the newest few.
    stores = sorted(
        (p for p in root.glob("synth-v*") if p.is_dir() and ".part-" not in p.name and p != keep),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in stores[spare:]:
        shutil.rmtree(old, ignore_errors=True)


def working_copy(src: Path, dest: Path) -> Config:
    """Copy a generated store into `dest` (recordings hard-linked: nothing rewrites them)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / "callvault.db", dest / "callvault.db")
    shutil.copytree(src / "keys", dest / "keys")
    shutil.copyfile(src / "manifest.json", dest / "manifest.json")
    if (src / "recordings").exists():
        shutil.copytree(src / "recordings", dest / "recordings", copy_function=_link_or_copy)
    # On disk before anything is timed: else the first fsync a benchmark makes (a commit, a
    # WAL checkpoint, an encrypted file) waits for the whole copy to be written back.
    fd = os.open(dest / "callvault.db", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return synth_config(dest)


def _link_or_copy(a: str, b: str) -> None:
    try:
        os.link(a, b)
    except OSError:
        shutil.copy2(a, b)
