"""Post-call transcription of a call's recorded legs with the manifest's batch STT model.

Each leg is decrypted in memory (`RecordingStore.open_recording`, audited as
`recording.transcribe` by the system component "transcriber"), converted to 16 kHz float32,
and transcribed by faster-whisper with word timestamps — plaintext audio never touches disk.
Separate legs (caller, callee) are transcribed, and the mixed recording only when a call has
no separate legs, so every segment has one speaker: its leg.

The model is the profile's `stt_batch` (whisper-base on CPU: better words and any language;
the live agent uses the faster tiny.en). It loads on first use and runs on one worker thread
of its own, one leg at a time, so live calls keep the event loop; on a CPU box it takes half
the cores, leaving the rest to the live agent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import soxr

from appliance.config import Config
from appliance.privacy import Actor, Privacy
from appliance.store import Database
from appliance.telephony.recordings import RecordingStore
from appliance.voice.audio import MODEL_RATE
from appliance.voice.transcripts import Segment, Transcript, TranscriptVault, Word

log = logging.getLogger(__name__)

ACTOR = Actor.system("transcriber")
PURPOSE = "post-call transcription"
SEPARATE_LEGS = ("caller", "callee")


class AudioFormatError(ValueError):
    pass


class StoppedError(RuntimeError):
    """The transcriber was closed while a leg was being decoded (the process is stopping)."""


@dataclass(frozen=True)
class BatchModel:
    """The batch STT model the profile names, where it is and what it runs on."""

    name: str
    path: Path
    device: str
    language: str
    """`multi`, or the one language an English-only model knows."""


def batch_model(cfg: Config) -> BatchModel:
    """The active profile's `stt_batch` model; ModelError if it is missing or damaged."""
    from appliance.models.commands import active_profile
    from appliance.models.devices import detect
    from appliance.models.manifest import ModelError, load_manifest
    from appliance.models.store import ModelStore

    manifest = load_manifest()
    store = ModelStore(cfg.models.dir, manifest)
    profile = active_profile(cfg, manifest)
    entry = manifest.profile(profile).get("stt_batch")
    if entry is None:
        raise ModelError(f"model profile {profile!r} names no stt_batch model")
    status = store.quick_status(entry)
    if not status.installed:
        raise ModelError(
            f"model {entry.name} (stt_batch) is unusable: {status.problem} "
            "(run `callvault models install`)"
        )
    return BatchModel(
        name=entry.name,
        path=store.path(entry.name),
        device=detect().for_engine(entry.format),
        language=entry.language,
    )


def default_threads() -> int:
    # Half the cores: live turns (Whisper tiny, llama.cpp, Piper) keep the other half.
    return max(1, (os.cpu_count() or 2) // 2)


@dataclass(frozen=True)
class Settings:
    """faster-whisper settings of the batch pass (the bench's bare run uses the same)."""

    beam_size: int = 1
    """Greedy: on call audio beam 5 gave no better words here and costs ~2x the CPU."""
    vad_filter: bool = True
    """Skip the leg's silences (while the other side talks): faster, and no words invented
    in silence."""
    condition_on_previous_text: bool = False
    """Each window on its own: a misheard phrase does not repeat through the rest."""

    def kwargs(self, language: str | None) -> dict[str, Any]:
        return {
            "language": language,
            "beam_size": self.beam_size,
            "vad_filter": self.vad_filter,
            "condition_on_previous_text": self.condition_on_previous_text,
            "word_timestamps": True,
        }


@dataclass(frozen=True)
class Recognised:
    segments: tuple[Segment, ...]
    language: str
    language_prob: float


class WhisperBatch:
    """One loaded faster-whisper model; every call runs on the caller's (worker) thread."""

    def __init__(self, model: BatchModel, *, threads: int | None = None) -> None:
        from faster_whisper import WhisperModel

        compute = "int8" if model.device == "cpu" else "float16"
        self.info = model
        self.model = WhisperModel(
            str(model.path),
            device=model.device,
            compute_type=compute,
            cpu_threads=threads or default_threads(),
        )

    def recognise(
        self,
        audio: npt.NDArray[np.float32],
        language: str | None,
        settings: Settings,
        stop: threading.Event | None = None,
    ) -> Recognised:
        """Blocking; `stop` set ends it at the next 30 s window (StoppedError)."""
        segments, info = self.model.transcribe(audio, **settings.kwargs(language))
        out = []
        for s in segments:  # a generator: the decoding happens while iterating
            if stop is not None and stop.is_set():
                raise StoppedError("transcription stopped: the transcriber was closed")
            words = tuple(
                Word(round(w.start, 3), round(w.end, 3), w.word.strip(), round(w.probability, 4))
                for w in (s.words or ())
            )
            out.append(Segment(round(s.start, 3), round(s.end, 3), s.text.strip(), words))
        return Recognised(tuple(out), info.language, float(info.language_probability))


def wav_to_model_audio(wav: bytes) -> npt.NDArray[np.float32]:
    """A mono 16-bit PCM WAV (MixMonitor's format) → 16 kHz float32 for Whisper.

    Reads the fmt chunk; the data runs from the `data` chunk to the end of what was given
    (an `incomplete` recording's header may still say 0 bytes).
    """
    if len(wav) < 12 or wav[:4] != b"RIFF" or wav[8:12] != b"WAVE":
        raise AudioFormatError("not a RIFF/WAVE file")
    pos, fmt, data_at = 12, None, None
    while pos + 8 <= len(wav):
        cid, size = wav[pos : pos + 4], struct.unpack_from("<I", wav, pos + 4)[0]
        if cid == b"fmt ":
            fmt = struct.unpack_from("<HHIIHH", wav, pos + 8)
        elif cid == b"data":
            data_at = pos + 8
            break
        pos += 8 + size + (size & 1)
    if fmt is None or data_at is None:
        raise AudioFormatError("WAV without fmt or data chunk")
    encoding, channels, rate, _, _, bits = fmt
    if encoding != 1 or channels != 1 or bits != 16:
        raise AudioFormatError(
            f"expected mono 16-bit PCM, got encoding {encoding}, {channels} channels, {bits} bits"
        )
    body = wav[data_at : data_at + (len(wav) - data_at) // 2 * 2]
    x = np.frombuffer(body, dtype="<i2").astype(np.float32) / 32768.0
    if rate == MODEL_RATE:
        return x
    # The whole leg at once (soxr, as the live path's Upsampler): no stream tail to flush.
    resampled: npt.NDArray[np.float32] = soxr.resample(x, rate, MODEL_RATE).astype(np.float32)
    return resampled


def legs_to_transcribe(recordings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Separate legs when the call has any (one speaker per transcript), else the mix."""
    separate = [r for r in recordings if r["leg"] in SEPARATE_LEGS]
    return separate or [r for r in recordings if r["leg"] == "mixed"]


class PostCallTranscriber:
    def __init__(
        self,
        cfg: Config,
        db: Database,
        privacy: Privacy,
        *,
        recordings: RecordingStore | None = None,
        model: WhisperBatch | None = None,
        threads: int | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.cfg = cfg
        self.db = db
        self.privacy = privacy
        self.recordings = recordings or RecordingStore(
            cfg.asterisk.host_path(cfg.asterisk.spool_dir), cfg.recordings_dir, db, privacy
        )
        self.vault = TranscriptVault(db, privacy)
        self.settings = settings or Settings()
        self._model = model
        self._threads = threads
        self._executor: ThreadPoolExecutor | None = None
        self._stop = threading.Event()

    def _pool(self) -> ThreadPoolExecutor:
        # One worker thread for the model: one leg at a time, never the loop's default pool.
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="transcriber")
            self._stop = threading.Event()
        return self._executor

    def close(self) -> None:
        """Stop taking work. A leg being decoded stops at its next 30 s window, so a stopping
        process (which joins this thread at exit) is not held up by a whole leg."""
        self._stop.set()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def model(self) -> WhisperBatch:
        if self._model is None:
            loop = asyncio.get_running_loop()
            info = await loop.run_in_executor(self._pool(), batch_model, self.cfg)
            self._model = await loop.run_in_executor(
                self._pool(), lambda: WhisperBatch(info, threads=self._threads)
            )
            log.info("batch STT model %s loaded on %s", info.name, info.device)
        return self._model

    def language_for(self, line: str) -> str | None:
        """The line's language, or None (Whisper detects it) for `auto` or an unknown line."""
        ln = self.cfg.line_by_name(line)
        if ln is None or ln.language == "auto":
            return None
        return ln.language

    async def decrypt_audio(self, rec: dict[str, Any]) -> npt.NDArray[np.float32]:
        """The leg's audio, decrypted into memory only (the read is audited)."""
        chunks = [
            chunk
            async for chunk in self.recordings.open_recording(
                rec, actor=ACTOR, purpose=PURPOSE, action="recording.transcribe"
            )
        ]
        return await asyncio.to_thread(wav_to_model_audio, b"".join(chunks))

    async def transcribe_recording(self, rec: dict[str, Any]) -> Transcript:
        """Decrypt and transcribe one leg (nothing stored)."""
        model = await self.model()
        audio = await self.decrypt_audio(rec)
        language = self.language_for(str(rec["line"]))
        if model.info.language != "multi":
            language = model.info.language  # an English-only model hears English
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(
            self._pool(), model.recognise, audio, language, self.settings, self._stop
        )
        return Transcript(
            call_id=str(rec["call_id"]),
            line=str(rec["line"]),
            leg=str(rec["leg"]),
            language=result.language,
            language_prob=result.language_prob,
            model=model.info.name,
            duration_s=len(audio) / MODEL_RATE,
            segments=result.segments,
        )

    async def transcribe_call(self, call_id: str) -> list[int]:
        """Transcribe and store every leg of the call not transcribed yet; all its transcript
        ids. Idempotent: a leg already stored is skipped (a job that ran twice, a restart)."""
        recs = legs_to_transcribe(await self.db.recordings(call_id))
        done = {(r["line"], r["leg"]): int(r["id"]) for r in await self.db.transcripts(call_id)}
        ids = []
        for rec in recs:
            known = done.get((rec["line"], rec["leg"]))
            if known is not None:
                ids.append(known)
                continue
            t = await self.transcribe_recording(rec)
            subjects = [int(s) for s in str(rec["key_subjects"]).split(",") if s]
            tid, _ = await self.vault.store(
                t, recording_id=int(rec["id"]), subject_ids=subjects, actor=ACTOR
            )
            log.info(
                "transcript %d: call %s %s/%s %.1fs %s (p=%.2f), %d segments",
                tid,
                call_id,
                t.line,
                t.leg,
                t.duration_s,
                t.language,
                t.language_prob,
                len(t.segments),
            )
            ids.append(tid)
        return ids
