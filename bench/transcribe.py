"""Post-call transcription speed: our path against bare faster-whisper on the same audio.

A caller leg of Piper-synthesised lines (bench.voice.LINES, with pauses) is recorded the way
the appliance stores it — encrypted under the call's subject keys — and transcribed:

  stt_rtf_batch    wall time of PostCallTranscriber.transcribe_call (decrypt in memory,
                   resample, whisper-base with word timestamps, seal, index, store, audit)
                   ÷ audio duration; median of repeats
  stt_rtf_vs_bare  that time ÷ bare `WhisperModel.transcribe(<plaintext wav path>)` (same
                   loaded model, same settings, segments consumed); median of the paired
                   ratios of runs taken alternately, so load on a shared box hits both alike

Run alone: `.venv/bin/python -m bench.transcribe` (merges its keys into latest.json).
"""

from __future__ import annotations

import asyncio
import io
import statistics
import sys
import tempfile
import time
import wave
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from appliance.config import Config
from appliance.privacy import Actor, Privacy
from appliance.store import CdrRow, Database
from appliance.telephony.recordings import RecordingStore
from appliance.voice.metrics import wer
from appliance.voice.transcribe import PostCallTranscriber, WhisperBatch, batch_model

console = Console()
CALL = "1700000000.42"


def _wav(pcm: bytes) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm)
    return buf.getvalue()


def caller_leg(cfg: Config) -> tuple[bytes, str]:
    from appliance.voice.tts import Tts
    from bench.voice import LINES

    voice = cfg.models.dir / "piper-en-us-joe" / "en_US-joe-medium.onnx"
    tts = Tts(voice)
    pause = b"\x00\x00" * 8000  # 1 s: the agent's turn, silent on this leg
    pcm = pause + b"".join(b"".join(tts.speak(line)) + pause for line in LINES)
    return _wav(pcm), " ".join(LINES)


async def _measure(cfg: Config, tmp: Path, repeats: int) -> dict[str, float]:
    wav, script = caller_leg(cfg)
    duration = (len(wav) - 44) / 16000
    plain = tmp / "plain.wav"  # the bare run's input (the appliance never writes one)
    plain.write_bytes(wav)
    model = WhisperBatch(batch_model(cfg))
    line = cfg.lines[0].name
    cdr = CdrRow(
        call_id=CALL, uniqueid=CALL, sequence=0, calling_number="201", caller_name="Desk",
        dialed_number=cfg.lines[0].extension, context="callvault-internal",
        direction="inbound", line=line, start_at=1000.0, answer_at=1001.0, end_at=1060.0,
        duration_s=60, billable_s=59, disposition="ANSWERED", hangup_cause=16,
        hangup_cause_text="Normal Clearing", channel="PJSIP/201-1",
        dest_channel="PJSIP/agent-2", last_app="Dial", source="ami",
    )  # fmt: skip
    async with Database(tmp / "transcribe.db") as db:
        privacy = Privacy(cfg, db)
        await privacy.subjects.add_cdr(cdr)
        spool = tmp / "spool"
        spool.mkdir(exist_ok=True)
        (spool / f"cv-{CALL}-{line}-caller.wav").write_bytes(wav)
        store = RecordingStore(spool, tmp / "recordings", db, privacy)
        await store.ingest_call(CALL)
        ours = PostCallTranscriber(cfg, db, privacy, recordings=store, model=model)
        kwargs = ours.settings.kwargs(ours.language_for(line))

        def bare() -> float:
            t0 = time.perf_counter()
            segments, _ = model.model.transcribe(str(plain), **kwargs)
            list(segments)
            return time.perf_counter() - t0

        await ours.transcribe_call(CALL)  # warm-up: first-run allocations, page cache
        bare()
        ours_s: list[float] = []
        bare_s: list[float] = []
        for _ in range(repeats):
            await db.delete_transcripts([t["id"] for t in await db.transcripts(CALL)])
            t0 = time.perf_counter()
            await ours.transcribe_call(CALL)
            ours_s.append(time.perf_counter() - t0)
            bare_s.append(await asyncio.to_thread(bare))
        [t] = await ours.vault.read(CALL, actor=Actor.system("bench"), purpose="benchmark")
        ours.close()
    ratios = [o / b for o, b in zip(ours_s, bare_s, strict=True)]
    console.print(
        f"  audio {duration:.1f}s; ours {[round(x, 2) for x in ours_s]} s, "
        f"bare {[round(x, 2) for x in bare_s]} s; WER {wer(script, t.text):.3f}"
    )
    return {
        "stt_rtf_batch": round(statistics.median(ours_s) / duration, 3),
        "stt_rtf_vs_bare": round(statistics.median(ratios), 3),
    }


def run(cfg: Config, tmp: Path, quick: bool = False) -> dict[str, float]:
    return asyncio.run(_measure(cfg, tmp, 3 if quick else 5))


def main() -> int:
    from bench.run import bench_config, write_results

    with tempfile.TemporaryDirectory(prefix="callvault-bench-stt-") as td:
        tmp = Path(td)
        cfg = bench_config(tmp / "state")
        cfg = replace(cfg, recordings_dir=tmp / "recordings")
        console.print("[bold]Post-call transcription (whisper-base) vs bare faster-whisper")
        results = run(cfg, tmp, quick="--quick" in sys.argv)
    console.print(results)
    write_results(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
