"""Post-call transcription: real Whisper (whisper-base) on Piper speech whose words are known,
sealed at rest, a keyed search index without plaintext, erasure, export, and the job queue."""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
import subprocess
import sys
import tomllib
import wave
import zipfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import pytest_asyncio

from appliance import config
from appliance.config import Config
from appliance.privacy import Actor, Privacy
from appliance.privacy.rights import Rights
from appliance.privacy.rights.export import schema
from appliance.store import Database
from appliance.telephony.recordings import RecordingStore
from appliance.voice.metrics import wer
from appliance.voice.postcall import BACKOFF_BASE_S, PostCallPipeline
from appliance.voice.transcribe import (
    PostCallTranscriber,
    WhisperBatch,
    batch_model,
    legs_to_transcribe,
    wav_to_model_audio,
)
from appliance.voice.transcripts import Segment, Transcript, TranscriptVault, Word, words_of
from tests.privacy.rights_fixtures import done, seed
from tests.store.test_db import CDR

REPO = Path(__file__).resolve().parents[2]
MODELS = Path(tomllib.loads((REPO / "config" / "callvault.dev.toml").read_text())["models"]["dir"])
CALLER = [
    "Hi, I would like to book an appointment for next Tuesday morning, please.",
    "My name is Anna.",
]
AGENT = ["Of course. We are open Monday to Friday from eight to five."]
QA = Actor("qa", "supervisor")


def make_cfg(tmp_path: Path) -> Config:
    raw = {
        "state_dir": "state",
        "asterisk": {"ami_secret": "unused-in-unit-tests"},
        "models": {"dir": str(MODELS), "profile": "cpu"},
        # `auto`: Whisper detects the language.
        "lines": [
            {"name": "reception", "extension": "100", "language": "auto"},
            {"name": "echo", "extension": "900", "kind": "echo"},
        ],
        "extensions": [{"number": "201", "name": "Desk"}, {"number": "202", "name": "Office"}],
    }
    return config.parse(raw, base_dir=tmp_path)


def wav(pcm: bytes) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm)
    return buf.getvalue()


def clip(leg: bytes, seconds: float = 3.0) -> bytes:
    """The first seconds of a leg (for tests about the queue, not the words)."""
    return wav(leg[44 : 44 + int(16000 * seconds)])


def silence(seconds: float) -> bytes:
    return b"\x00\x00" * int(8000 * seconds)


@pytest.fixture(scope="module")
def legs() -> dict[str, bytes]:
    """Two sides of one conversation as MixMonitor writes them: each speaks, then is silent
    while the other does."""
    from appliance.voice.tts import Tts

    tts = Tts(MODELS / "piper-en-us-joe" / "en_US-joe-medium.onnx")
    said = [b"".join(tts.speak(t)) for t in CALLER]
    answer = b"".join(tts.speak(AGENT[0]))
    gap = silence(0.7)
    caller = gap + said[0] + gap + silence(len(answer) / 16000) + gap + said[1] + gap
    callee = gap + silence(len(said[0]) / 16000) + gap + answer + gap + silence(0.5)
    return {"caller": wav(caller), "callee": wav(callee)}


@pytest.fixture(scope="module")
def whisper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WhisperBatch]:
    yield WhisperBatch(batch_model(make_cfg(tmp_path_factory.mktemp("m"))), threads=2)


class Env:
    def __init__(self, cfg: Config, db: Database, privacy: Privacy, whisper: WhisperBatch):
        self.cfg, self.db, self.privacy = cfg, db, privacy
        self.spool = cfg.state_dir / "spool"
        self.spool.mkdir(parents=True, exist_ok=True)
        self.store = RecordingStore(self.spool, cfg.recordings_dir, db, privacy)
        self.whisper = whisper

    def transcriber(self) -> PostCallTranscriber:
        return PostCallTranscriber(
            self.cfg, self.db, self.privacy, recordings=self.store, model=self.whisper
        )

    async def record(
        self, call_id: str, legs: dict[str, bytes], cdr: bool = True, line: str = "reception"
    ) -> None:
        if cdr:
            await self.privacy.subjects.add_cdr(
                replace(CDR, call_id=call_id, uniqueid=call_id, line=line)
            )
        for leg, data in legs.items():
            (self.spool / f"cv-{call_id}-{line}-{leg}.wav").write_bytes(data)
        await self.store.ingest_call(call_id)


@pytest_asyncio.fixture
async def env(tmp_path: Path, whisper: WhisperBatch) -> AsyncIterator[Env]:
    cfg = make_cfg(tmp_path)
    async with Database(cfg.database) as db:
        yield Env(cfg, db, Privacy(cfg, db), whisper)


class Reports:
    """The report step as the pipeline sees it; fails the first `fail` times."""

    def __init__(self, fail: int = 0) -> None:
        self.calls: list[str] = []
        self.fail = fail

    async def report(self, call_id: str) -> object:
        self.calls.append(call_id)
        if len(self.calls) <= self.fail:
            raise RuntimeError("the model said Anna wants Tuesday")  # must not reach the DB
        return {"call_id": call_id}


def files_bytes(cfg: Config) -> bytes:
    return b"".join(p.read_bytes() for p in cfg.state_dir.rglob("*") if p.is_file()).lower()


def audit_actions(cfg: Config) -> list[str]:
    con = sqlite3.connect(cfg.database)
    return [str(a) for (a,) in con.execute("SELECT action FROM audit_log ORDER BY seq")]


async def test_legs_are_transcribed_sealed_and_found_by_keyed_search(env: Env, legs) -> None:
    call = "1700000100.1"
    await env.record(call, {**legs, "mixed": legs["caller"]})
    job = await env.db.post_call_job(call)
    assert job is not None and job["stage"] == "transcribe"  # queued with the recordings
    reports = Reports()
    pipeline = PostCallPipeline(
        env.cfg, env.db, env.privacy, transcriber=env.transcriber(), reporter=reports
    )
    assert await pipeline.run_due() == 1
    assert reports.calls == [call]
    assert (await env.db.post_call_job(call))["stage"] == "done"

    found = await pipeline.transcript(call, QA, "quality check")
    assert [t.leg for t in found] == ["callee", "caller"]  # separate legs; not the mix
    caller = next(t for t in found if t.leg == "caller")
    assert wer(" ".join(CALLER), caller.text) <= 0.15, caller.text
    assert caller.language == "en" and caller.language_prob > 0.5  # detected (line: auto)
    assert caller.model == "whisper-base"
    words = [w for s in caller.segments for w in s.words]
    assert len(words) >= 15
    assert all(0 <= w.start <= w.end <= caller.duration_s + 0.01 for w in words)
    assert all(0 < w.prob <= 1 for w in words)
    tuesday = next(w for w in words if "tuesday" in w.word.lower())
    assert 1.0 < tuesday.start < 6.0  # said in the first sentence, after 0.7 s of silence

    # Search by keyed tokens: every word of the query in the call, on any leg.
    [hit] = await pipeline.search("Appointment, TUESDAY", QA, "find bookings")
    assert hit.call_id == call and {h.leg for h in hit.hits} == {"caller"}
    assert hit.hits[0].start_s < 6.0
    [both] = await pipeline.search("appointment friday", QA, "find bookings")
    assert {h.leg for h in both.hits} == {"caller", "callee"}
    assert await pipeline.search("appointment zebra", QA, "find bookings") == []

    # Running the job again changes nothing: one transcript per leg.
    await env.db.post_call_enqueue(call, at=0.0)
    await pipeline.run_due()
    assert len(await env.db.transcripts(call)) == 2

    actions = audit_actions(env.cfg)
    assert actions.count("recording.transcribe") == 2  # each leg's decrypt, once
    assert actions.count("transcript.create") == 2
    assert actions.count("transcript.view") == 2 and actions.count("transcript.search") == 3
    # Neither the words nor the audio are anywhere on disk in the clear.
    await env.db.checkpoint()
    on_disk = files_bytes(env.cfg)
    # Words no table or column is named after ("appointment" is: the schema text is on disk).
    for word in (b"anna", b"tuesday", b"morning", b"monday", b"friday"):
        assert on_disk.lower().count(word) == 0, word
    token = (await TranscriptVault(env.db, env.privacy).tokens(["tuesday"]))[0]
    assert token.encode() in on_disk  # what the index holds instead


async def test_job_resumes_after_a_crash_mid_transcription(env: Env, legs) -> None:
    call = "1700000200.1"
    await env.record(call, {"caller": clip(legs["caller"])})
    first = PostCallPipeline(env.cfg, env.db, env.privacy, transcriber=env.transcriber())
    await first.start()
    for _ in range(400):  # until the leg is being decrypted and transcribed
        if "recording.transcribe" in audit_actions(env.cfg):
            break
        await asyncio.sleep(0.02)
    await first.stop()  # the process dies here: nothing of the transcription was stored
    assert await env.db.transcripts(call) == []
    path = env.db.path
    await env.db.close()

    async with Database(path) as db:  # the next start
        privacy = Privacy(env.cfg, db)
        env.db, env.privacy = db, privacy
        env.store = RecordingStore(env.spool, env.cfg.recordings_dir, db, privacy)
        second = PostCallPipeline(env.cfg, db, privacy, transcriber=env.transcriber())
        await second.start()
        try:
            for _ in range(1500):
                job = await db.post_call_job(call)
                if job and job["stage"] != "transcribe":
                    break
                await asyncio.sleep(0.02)
        finally:
            await second.stop()
        [t] = await db.transcripts(call)
        assert t["leg"] == "caller" and job is not None and job["stage"] == "report"


async def test_failures_are_kept_with_backoff_and_retried(env: Env, legs) -> None:
    call = "1700000300.1"
    now = [1_800_000_000.0]
    # Recordings before the call's CDR (Asterisk's CDR came late): the job must wait for it.
    await env.record(call, {"caller": clip(legs["caller"])}, cdr=False)
    reports = Reports(fail=1)
    pipeline = PostCallPipeline(
        env.cfg,
        env.db,
        env.privacy,
        transcriber=env.transcriber(),
        reporter=reports,
        clock=lambda: now[0],
    )
    assert await pipeline.run_due() == 1
    job = await env.db.post_call_job(call)
    assert job["stage"] == "transcribe" and job["attempts"] == 1
    assert "no CDR yet" in job["last_error"]
    assert job["next_at"] == now[0] + BACKOFF_BASE_S
    assert await pipeline.run_due() == 0  # not due before the backoff ends

    await env.privacy.subjects.add_cdr(replace(CDR, call_id=call, uniqueid=call))
    now[0] += BACKOFF_BASE_S
    await pipeline.run_due()  # transcribed; the report fails once
    job = await env.db.post_call_job(call)
    assert job["stage"] == "report" and job["attempts"] == 1
    assert job["last_error"] == "RuntimeError"  # the report's words stay out of the store
    assert job["next_at"] == now[0] + BACKOFF_BASE_S
    now[0] += BACKOFF_BASE_S
    await pipeline.run_due()
    assert (await env.db.post_call_job(call))["stage"] == "done"
    assert reports.calls == [call, call]
    assert len(await env.db.transcripts(call)) == 1


def synthetic(call_id: str, leg: str = "caller") -> Transcript:
    words = (Word(0.5, 1.0, "Appointment", 0.9), Word(1.1, 1.6, "Tuesday.", 0.8))
    return Transcript(
        call_id=call_id,
        line="reception",
        leg=leg,
        language="en",
        language_prob=0.99,
        model="whisper-base",
        duration_s=3.0,
        segments=(Segment(0.5, 1.6, "Appointment Tuesday.", words),),
    )


async def store_synthetic(privacy: Privacy, call_id: str) -> int:
    [rec] = await privacy.db.recordings(call_id)
    subjects = [int(s) for s in rec["key_subjects"].split(",")]
    tid, new = await TranscriptVault(privacy.db, privacy).store(
        synthetic(call_id), recording_id=rec["id"], subject_ids=subjects, actor=QA
    )
    assert new
    return tid


@pytest_asyncio.fixture
async def rights_env(tmp_path: Path) -> AsyncIterator[tuple[Privacy, Rights]]:
    cfg = make_cfg(tmp_path)
    async with Database(cfg.database) as db:
        privacy = Privacy(cfg, db)
        yield privacy, Rights(privacy)


async def test_erasure_shreds_transcripts_and_their_index_rows(
    rights_env: tuple[Privacy, Rights], tmp_path: Path
) -> None:
    privacy, rights = rights_env
    seeded = await seed(privacy, tmp_path)
    inbound = seeded.calls[0]
    tid = await store_synthetic(privacy, inbound)
    vault = TranscriptVault(privacy.db, privacy)
    [token] = await vault.tokens(["tuesday"])
    assert await privacy.db.transcript_index_rows(tid) == 1
    assert token.encode() in privacy.cfg.database.read_bytes() + _wal(privacy.cfg)

    rid = await done(rights, "erasure")
    resp = (await rights.get(rid)).response
    assert resp["deleted"]["transcripts"] == 1
    assert await privacy.db.transcripts_for_calls([inbound]) == []
    assert await privacy.db.transcript_index_rows(tid) == 0
    assert await privacy.db.transcript_index_size() == 0
    assert await vault.search("appointment tuesday", actor=QA, purpose="check") == []
    await privacy.db.checkpoint()
    assert token.encode() not in privacy.cfg.database.read_bytes() + _wal(privacy.cfg)


async def test_erasure_keeps_a_held_calls_transcript(
    rights_env: tuple[Privacy, Rights], tmp_path: Path
) -> None:
    privacy, rights = rights_env
    seeded = await seed(privacy, tmp_path)
    inbound = seeded.calls[0]
    tid = await store_synthetic(privacy, inbound)
    await rights.holds.on_calls([inbound], QA, reason="dispute 7", owner="legal@example.com")
    rid = await done(rights, "erasure")
    resp = (await rights.get(rid)).response
    assert resp["kept_under_legal_hold"]["transcripts"] == 1
    assert resp["deleted"]["transcripts"] == 0
    [t] = await TranscriptVault(privacy.db, privacy).read(inbound, actor=QA, purpose="legal")
    assert t.id == tid and t.text == "Appointment Tuesday."


async def test_access_export_holds_the_decrypted_transcripts(
    rights_env: tuple[Privacy, Rights], tmp_path: Path
) -> None:
    privacy, rights = rights_env
    seeded = await seed(privacy, tmp_path)
    tid = await store_synthetic(privacy, seeded.calls[0])
    rid = await done(rights, "access")
    req = await rights.get(rid)
    doc = json.loads(zipfile.ZipFile(req.export_path).read("records.json"))
    jsonschema.validate(doc, schema())
    [t] = doc["transcripts"]
    assert t["id"] == tid and t["speaker"] == "caller" and t["call_id"] == seeded.calls[0]
    assert [w["word"] for w in t["segments"][0]["words"]] == ["Appointment", "Tuesday."]
    assert "transcript.export" in audit_actions(privacy.cfg)
    summary = zipfile.ZipFile(req.export_path).read("summary.txt").decode()
    assert "Transcripts: 1" in summary


def _wal(cfg: Config) -> bytes:
    wal = Path(f"{cfg.database}-wal")
    return wal.read_bytes() if wal.exists() else b""


def test_search_words_are_normalised_like_the_index() -> None:
    assert words_of("Tuesday, 9:30 — Anna's follow-up!") == [
        "tuesday", "9", "30", "annas", "follow", "up",
    ]  # fmt: skip
    full_width = "\uff34\uff35\uff25\uff33\uff24\uff21\uff39"
    assert words_of(full_width) == ["tuesday"]  # NFKC


def test_only_the_mix_when_there_are_no_separate_legs() -> None:
    recs: list[dict[str, Any]] = [{"leg": "mixed"}, {"leg": "caller"}]
    assert legs_to_transcribe(recs) == [{"leg": "caller"}]
    assert legs_to_transcribe([{"leg": "mixed"}]) == [{"leg": "mixed"}]


def test_audio_is_converted_to_16k_in_memory_and_bad_formats_are_named() -> None:
    audio = wav_to_model_audio(wav(b"\x00\x10" * 8000))
    assert len(audio) == 16000 and abs(float(audio[8000]) - 0.125) < 0.01
    stereo = io.BytesIO()
    with wave.open(stereo, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00" * 400)
    with pytest.raises(ValueError, match="2 channels"):
        wav_to_model_audio(stereo.getvalue())
    with pytest.raises(ValueError, match="RIFF"):
        wav_to_model_audio(b"not a wav file at all")


def transcripts_cli(config_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance.cli", "--config", str(config_path), "transcripts", *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )


async def test_cli_shows_and_searches_audited(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        'state_dir = "state"\n[asterisk]\nami_secret = "x"\n'
        '[[lines]]\nname = "reception"\nextension = "100"\n'
        '[[extensions]]\nnumber = "201"\nname = "Desk"\n'
    )
    cfg = config.load(path)
    async with Database(cfg.database) as db:
        privacy = Privacy(cfg, db)
        seeded = await seed(privacy, tmp_path)
        await store_synthetic(privacy, seeded.calls[0])
    shown = await asyncio.to_thread(transcripts_cli, path, "show", seeded.calls[0])
    assert shown.returncode == 0, shown.stderr
    assert "caller" in shown.stdout and "[0:00.5-0:01.6] Appointment Tuesday." in shown.stdout
    found = await asyncio.to_thread(transcripts_cli, path, "search", "tuesday", "appointment")
    assert found.returncode == 0 and seeded.calls[0] in found.stdout and "0:00.5" in found.stdout
    none = await asyncio.to_thread(transcripts_cli, path, "show", seeded.other_call)
    assert none.returncode == 2 and "has no transcript" in none.stderr
    jobs = await asyncio.to_thread(transcripts_cli, path, "jobs")
    assert jobs.returncode == 0 and seeded.calls[0] in jobs.stdout  # its recording queued it
    actions = audit_actions(cfg)
    assert actions.count("transcript.view") == 1 and actions.count("transcript.search") == 1
    con = sqlite3.connect(cfg.database)
    [(actor,)] = con.execute("SELECT actor FROM audit_log WHERE action = 'transcript.view'")
    assert actor.startswith("cli:")


async def test_a_restricted_subjects_call_is_not_transcribed(
    rights_env: tuple[Privacy, Rights], tmp_path: Path
) -> None:
    privacy, rights = rights_env
    seeded = await seed(privacy, tmp_path)
    await done(rights, "restriction")
    pipeline = PostCallPipeline(privacy.cfg, privacy.db, privacy)
    await pipeline.run_due()
    job = await privacy.db.post_call_job(seeded.calls[0])
    assert job["stage"] == "transcribe" and job["attempts"] == 1
    assert "restricted processing" in job["last_error"]
    assert await privacy.db.transcripts(seeded.calls[0]) == []
    assert "recording.transcribe" not in audit_actions(privacy.cfg)  # not even decrypted


async def test_test_lines_are_not_transcribed(env: Env, legs) -> None:
    call = "1700000400.1"
    await env.record(call, {"mixed": clip(legs["caller"], 1.0)}, line="echo")
    reports = Reports()
    pipeline = PostCallPipeline(
        env.cfg, env.db, env.privacy, transcriber=env.transcriber(), reporter=reports
    )
    assert await pipeline.run_due() == 1
    assert (await env.db.post_call_job(call))["stage"] == "done"
    assert await env.db.transcripts(call) == [] and reports.calls == []
    assert "recording.transcribe" not in audit_actions(env.cfg)


async def test_a_busy_agent_holds_up_model_work_only(env: Env, legs) -> None:
    """While the agent has calls up, a call that needs Whisper waits; an echo-line call queued
    behind it (nothing for the models) is finished at once, not held up by it."""
    agent_call, echo_call = "1700000500.1", "1700000501.1"
    await env.record(agent_call, {"caller": clip(legs["caller"], 1.0)})
    await env.record(echo_call, {"mixed": clip(legs["caller"], 1.0)}, line="echo")
    busy = True
    pipeline = PostCallPipeline(
        env.cfg, env.db, env.privacy, transcriber=env.transcriber(), idle=lambda: not busy
    )
    await pipeline.start()
    try:
        async with asyncio.timeout(10):
            while (await env.db.post_call_job(echo_call))["stage"] != "done":  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        assert (await env.db.post_call_job(agent_call))["stage"] == "transcribe"
        assert await env.db.transcripts(agent_call) == []
        busy = False  # the agent's calls end: after the settle time, the model work runs
        async with asyncio.timeout(60):
            while (await env.db.post_call_job(agent_call))["stage"] == "transcribe":  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        assert len(await env.db.transcripts(agent_call)) == 1
    finally:
        await pipeline.stop()
