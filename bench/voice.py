"""Voice-agent benchmarks through the real Asterisk sandbox with a scripted caller.

A pjsua2 desk phone calls the AI line and speaks Piper-synthesised lines whose words are known;
the agent runs in this process (its own timings per turn) while the phone measures what a
caller hears: end of their speech → first audio of the answer.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

import numpy as np

from appliance.config import Config
from appliance.server import Appliance
from appliance.store import Database
from appliance.telephony.audio import first_voice_s
from appliance.telephony.sip import PjRuntime, SipCall, SipPhone
from appliance.voice.agent import Conversation, VoiceAgent
from appliance.voice.engines import VoiceEngines
from appliance.voice.metrics import word_errors

LINES = [
    "Hi, I would like to book an appointment for next Tuesday morning, please.",
    "My name is Anna Smith.",
    "What are your opening hours?",
    "Can I come in on Wednesday afternoon instead?",
    "Where is the clinic?",
    "Thank you, that is all.",
]


def _quiet_for(pcm: bytes, seconds: float, threshold: int = 500) -> bool:
    tail = np.frombuffer(pcm[-int(seconds * 16000) :], "<i2")
    return len(tail) >= int(seconds * 8000) and int(np.abs(tail).max(initial=0)) < threshold


async def _answer_after(call: SipCall, since: int, timeout: float = 20.0) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        found = first_voice_s(call.received_pcm()[since:])
        if found is not None:
            return found
        await asyncio.sleep(0.01)
    raise RuntimeError("the agent did not answer")


async def _until_agent_done(call: SipCall, timeout: float = 30.0) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout and not _quiet_for(call.received_pcm(), 1.2):
        await asyncio.sleep(0.1)


async def _turns(cfg: Config, engines: VoiceEngines, calls: int, tmp: Path) -> dict[str, float]:
    done: list[Conversation] = []
    speech = [b"".join(engines.tts.speak(text)) for text in LINES]
    heard_latency: list[float] = []
    async with PjRuntime(bind_port=0) as runtime:
        agent = VoiceAgent(cfg, engines, on_done=done.append)
        async with (
            Database(tmp / "voice.db") as db,
            Appliance(cfg, db, runtime=runtime, handler=agent),
        ):
            ext = cfg.extensions[0]
            async with SipPhone(
                username=ext.number,
                password=cfg.extension_password(ext),
                registrar_host="127.0.0.1",
                registrar_port=cfg.asterisk.sip_port,
                runtime=runtime,
            ) as phone:
                for _ in range(calls):
                    call = await phone.dial(cfg.lines[0].extension)
                    await call.wait_confirmed(timeout=10)
                    await _answer_after(call, 0)
                    await _until_agent_done(call)
                    for pcm in speech:
                        call.play(pcm)
                        await call.wait_played()
                        heard_latency.append(await _answer_after(call, len(call.received_pcm())))
                        await _until_agent_done(call)
                    await call.hangup()
                    await call.wait_ended(timeout=5)
            for _ in range(100):
                if len(done) >= calls:
                    break
                await asyncio.sleep(0.05)
    timings = [t for c in done for t in c.timings]
    errors = words = 0
    for convo in done:
        heard = [t.text for t in convo.turns if t.role == "caller"]
        e, n = word_errors(" ".join(LINES), " ".join(heard))
        errors, words = errors + e, words + n
    lat_ms = sorted(x * 1000 for x in heard_latency)
    ratios = [
        t.answer_ms / (t.endpoint_wait_ms + t.stt_ms + t.llm_first_ms + t.tts_first_ms)
        for t in timings
    ]
    return {
        "turn_latency_p50_ms": round(statistics.median(lat_ms)),
        "turn_latency_p95_ms": round(lat_ms[min(len(lat_ms) - 1, int(0.95 * len(lat_ms)))]),
        "turn_overhead_ratio": round(statistics.median(ratios), 3),
        "turn_count": len(lat_ms),
        "transcript_wer": round(errors / max(words, 1), 4),
        "llm_first_sentence_ms": round(statistics.median(t.llm_first_ms for t in timings)),
        "tts_first_audio_ms": round(statistics.median(t.tts_first_ms for t in timings)),
        "stt_turn_ms": round(statistics.median(t.stt_ms for t in timings)),
    }


def _llm_ttft_ms(engines: VoiceEngines, repeats: int = 5) -> float:
    messages = [
        {"role": "system", "content": "You are a helpful receptionist. Answer briefly."},
        {"role": "user", "content": "What are your opening hours?"},
    ]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        stream = engines.llm.model.create_chat_completion(
            messages=messages,  # type: ignore[arg-type]
            max_tokens=8,
            stream=True,
        )
        for chunk in stream:  # type: ignore[union-attr]
            if chunk["choices"][0]["delta"].get("content"):
                times.append((time.perf_counter() - t0) * 1000)
                break
        for _ in stream:  # type: ignore[union-attr]
            pass
    return round(statistics.median(times))


def run(cfg: Config, tmp: Path, quick: bool = False) -> dict[str, float]:
    engines = VoiceEngines.load(cfg)
    results = asyncio.run(_turns(cfg, engines, 1 if quick else 4, tmp))
    results["llm_ttft_ms"] = _llm_ttft_ms(engines)
    return results
