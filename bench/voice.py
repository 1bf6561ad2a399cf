"""Voice-agent benchmarks through the real Asterisk sandbox with scripted callers.

The agent (this process: the appliance with the voice agent on the AI line) answers scripted
callers that run in a second process (bench/voice_caller.py: the pjsua2 wheel allows 4 call legs
per process, and the agent needs up to 4). Each caller speaks Piper-synthesised lines whose
words are known and measures what a caller hears: end of their speech → first audio of the
answer. The utterances are cut right after their last voiced sample (Piper ends a sentence with
0.15-0.3 s of silence; leaving it in would start the clock late and flatter the figure).

Keys:
  turn_latency_p50_ms / _p95_ms   one call at a time, >= 20 turns (4 calls x 6 lines)
  turn_overhead_ratio             median over those turns of the agent's own answer time
                                  (end of speech -> first audio queued on the call) / (endpoint
                                  wait + STT + LLM first piece + TTS first audio). The agent
                                  prepares the answer during the endpoint wait, so the stages
                                  overlap: below 1 is the overlap gained, above 1 is glue cost.
  turn_speculative_share          turns whose answer was ready before the endpoint fired
  turn_transport_ms               median caller-heard latency minus the agent's own answer time:
                                  Asterisk, RTP and the two pjsua2 jitter buffers
  stt_turn_ms, llm_ttft_ms, llm_first_sentence_ms, tts_first_audio_ms, turn_endpoint_wait_ms
                                  medians of the stage times in those real turns (TTFT: the
                                  turn's own prompt on the call's llama.cpp context, whose cache
                                  holds the system prompt and the call so far)
  transcript_wer                  live transcripts of the caller's lines against the script
  concurrent_ai_calls_p95_under_2s
                                  largest N in 1..4 simultaneous scripted calls (starts 1.3 s
                                  apart, 6 turns each) whose P95 turn latency is <= 2 s; 0 when
                                  even one call misses. Per-level P95s: concurrent_<N>_p95_ms
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from appliance.config import Config
from appliance.server import Appliance
from appliance.store import Database
from appliance.telephony.sip import PjRuntime
from appliance.voice.agent import Conversation, TurnTiming, VoiceAgent
from appliance.voice.engines import VoiceEngines
from appliance.voice.metrics import word_errors
from bench.voice_caller import ANSWER_TIMEOUT_S

LINES = [
    "Hi, I would like to book an appointment for next Tuesday morning, please.",
    "My name is Anna Smith.",
    "What are your opening hours?",
    "Can I come in on Wednesday afternoon instead?",
    "Where is the clinic?",
    "Thank you, that is all.",
]
P95_LIMIT_MS = 2000.0
REPO = Path(__file__).resolve().parents[1]
STAGGER_S = 1.3


def speech_only(pcm: bytes, threshold: int = 500) -> bytes:
    """The utterance up to its last voiced 20 ms frame: the caller stops speaking there."""
    samples = np.frombuffer(pcm, "<i2")
    loud = np.flatnonzero(np.abs(samples) > threshold)
    end = 0 if not len(loud) else min(len(samples), (int(loud[-1]) // 160 + 1) * 160)
    return pcm[: 2 * end]


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def bench_line_config(cfg: Config) -> Config:
    """The AI line as configured, minus recording: post-call transcription of earlier calls would
    otherwise compete with later calls for the CPU and blur the figures."""
    line = cfg.lines[0]
    lines = (replace(line, recording="off", record_legs=()), *cfg.lines[1:])
    return replace(cfg, lines=lines)


async def _callers(cfg: Config, tmp: Path, files: list[str], n: int, rounds: int) -> list[Any]:
    spec = {
        "registrar_port": cfg.asterisk.sip_port,
        "extensions": [
            {"number": e.number, "password": cfg.extension_password(e)} for e in cfg.extensions[:n]
        ],
        "target": cfg.lines[0].extension,
        "utterances": files,
        "rounds": rounds,
        "stagger_s": STAGGER_S,
    }
    path = tmp / f"callers-{n}.json"
    path.write_text(json.dumps(spec))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.voice_caller", str(path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        cwd=REPO,
    )  # fmt: skip
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"scripted callers failed ({proc.returncode}): {err.decode()[-1500:]}")
    calls: list[Any] = json.loads(out)["calls"]
    return calls


async def _levels(
    cfg: Config, engines: VoiceEngines, tmp: Path, levels: list[int], rounds_at_1: int
) -> dict[int, tuple[list[Any], list[Conversation]]]:
    files = []
    for i, text in enumerate(LINES):
        path = tmp / f"line-{i}.pcm"
        path.write_bytes(speech_only(b"".join(engines.tts.speak(text))))
        files.append(str(path))
    out: dict[int, tuple[list[Any], list[Conversation]]] = {}
    async with PjRuntime(bind_port=0) as runtime:
        done: list[Conversation] = []
        agent = VoiceAgent(cfg, engines, on_done=done.append)
        async with (
            Database(tmp / "voice.db") as db,
            Appliance(cfg, db, runtime=runtime, handler=agent),
        ):
            for n in levels:
                start = len(done)
                calls = await _callers(cfg, tmp, files, n, rounds_at_1 if n == 1 else 1)
                for _ in range(200):
                    if len(done) - start >= len(calls):
                        break
                    await asyncio.sleep(0.05)
                out[n] = (calls, done[start:])
                heard = [x for c in calls for x in c["latencies_ms"]]
                ok = [x for x in heard if x is not None]
                print(
                    f"  {n} simultaneous: {len(ok)}/{len(heard)} answered, "
                    f"P50 {statistics.median(ok) if ok else 0:.0f} ms, "
                    f"P95 {p95(ok) if ok else 0:.0f} ms",
                    flush=True,
                )
    return out


def _single(calls: list[Any], convos: list[Conversation]) -> dict[str, float]:
    said = [x for c in calls for x in c["latencies_ms"]]
    # An unanswered turn counts as the caller's whole patience (and is reported).
    heard = [ANSWER_TIMEOUT_S * 1000 if x is None else x for x in said]
    timings: list[TurnTiming] = [t for c in convos for t in c.timings]
    transport = []
    # One call at a time, in order: the caller's turns and the agent's answers pair up.
    for caller, convo in zip(calls, convos, strict=False):
        if len(convo.timings) == len(caller["latencies_ms"]):
            transport += [
                h - t.answer_ms for h, t in zip(caller["latencies_ms"], convo.timings, strict=True)
            ]
    errors = words = 0
    for convo in convos:
        words_said = [t.text for t in convo.turns if t.role == "caller"]
        e, n = word_errors(" ".join(LINES), " ".join(words_said))
        errors, words = errors + e, words + n

    def median(values: list[float]) -> float:
        return round(statistics.median(values)) if values else -1

    return {
        "turn_latency_p50_ms": median(heard),
        "turn_latency_p95_ms": round(p95(heard)),
        "turn_count": len(heard),
        "turn_unanswered": said.count(None),
        "turn_overhead_ratio": round(
            statistics.median(t.answer_ms / t.stages_ms for t in timings), 3
        ),
        "turn_speculative_share": round(sum(t.speculative for t in timings) / len(timings), 3),
        "turn_transport_ms": median(transport),
        "turn_endpoint_wait_ms": median([t.endpoint_wait_ms for t in timings]),
        "stt_turn_ms": median([t.stt_ms for t in timings]),
        "llm_ttft_ms": median([t.llm_ttft_ms for t in timings]),
        "llm_first_sentence_ms": median([t.llm_first_ms for t in timings]),
        "tts_first_audio_ms": median([t.tts_first_ms for t in timings]),
        "transcript_wer": round(errors / max(words, 1), 4),
    }


def run(cfg: Config, tmp: Path, quick: bool = False) -> dict[str, float]:
    cfg = bench_line_config(cfg)
    engines = VoiceEngines.load(cfg)
    max_calls = min(cfg.agent.max_calls, len(cfg.extensions), 4)
    levels = [1, 2] if quick else list(range(1, max_calls + 1))
    sweep = asyncio.run(_levels(cfg, engines, tmp, levels, rounds_at_1=1 if quick else 4))
    results = _single(*sweep[1])
    best, passing = 0, True
    for n in levels:
        heard = [x for c in sweep[n][0] for x in c["latencies_ms"]]
        level_p95 = float("inf") if None in heard or not heard else p95(heard)
        results[f"concurrent_{n}_p95_ms"] = round(level_p95) if level_p95 != float("inf") else -1
        passing = passing and level_p95 <= P95_LIMIT_MS
        if passing:
            best = n
    results["concurrent_ai_calls_p95_under_2s"] = best
    results["voice_gate_wait_s"] = round(engines.gate.waited_s, 1)
    return results
