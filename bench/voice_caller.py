"""Scripted callers for the voice bench, in their own process.

The pjsua2 wheel allows 4 call legs per process, and the agent's process needs one leg per AI
call, so simultaneous scripted callers run here, beside it: each registers as a desk phone,
calls the AI line, waits for the greeting, then speaks its utterances (Piper audio whose speech
ends exactly where the buffer ends) and measures what a caller hears: end of their speech →
first audio of the answer, counted in received audio samples.

Usage: python -m bench.voice_caller SPEC.json  (prints the results as JSON on stdout)
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from appliance.telephony.sip import PjRuntime, SipCall, SipPhone

ANSWER_TIMEOUT_S = 20.0
VOICE = 500
"""Peak level of a voiced frame (appliance.telephony.audio.first_voice_s's threshold)."""
FRAME_S = 0.02
FRAME_BYTES = 320
RECEIVED_CAP_BYTES = 119 * 16000
"""SipCall keeps the last 120 s received; frame counts past that would not line up."""


class Ear:
    """What one caller hears, frame by frame: each received 20 ms frame's peak level.

    Reads the call's frame stream instead of polling `received_pcm()` (a copy of everything
    received so far): four callers polling copies every 10 ms cost the agent's box real CPU.
    """

    def __init__(self, call: SipCall) -> None:
        self.call = call
        self.peaks: list[int] = []
        self.task = asyncio.create_task(self._listen())

    async def _listen(self) -> None:
        async for frame in self.call.frames():
            self.peaks.append(int(np.abs(np.frombuffer(frame, "<i2")).max(initial=0)))

    async def answer_after(self, mark: int, timeout: float) -> float | None:
        """Seconds from received frame `mark` to the first voiced frame after it."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout and self.call.is_active:
            for i in range(mark, len(self.peaks)):
                if self.peaks[i] > VOICE:
                    return (i - mark) * FRAME_S
            await asyncio.sleep(0.01)
        return None

    async def until_quiet(self, seconds: float = 1.2, timeout: float = 40.0) -> None:
        frames = round(seconds / FRAME_S)
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            tail = self.peaks[-frames:]
            if len(tail) == frames and max(tail) < VOICE:
                return
            await asyncio.sleep(0.1)


async def one_call(
    phone: SipPhone, target: str, utterances: list[bytes], delay: float
) -> dict[str, Any]:
    await asyncio.sleep(delay)
    latencies: list[float | None] = []
    call = await phone.dial(target)
    await call.wait_confirmed(timeout=15)
    ear = Ear(call)
    greeting = await ear.answer_after(0, ANSWER_TIMEOUT_S)
    await ear.until_quiet()
    for pcm in utterances:
        call.play(pcm)
        await call.wait_played()
        # Frames the loop has taken in when the last of the caller's speech left: both arrive
        # in the media thread's order, so the ear has counted the same frames.
        received = len(call.received_pcm())
        if received >= RECEIVED_CAP_BYTES:
            raise RuntimeError("the call outgrew SipCall's received-audio window")
        mark = received // FRAME_BYTES
        heard = await ear.answer_after(mark, ANSWER_TIMEOUT_S)
        latencies.append(None if heard is None else heard * 1000)
        await ear.until_quiet()
    await call.hangup()
    await call.wait_ended(timeout=10)
    ear.task.cancel()
    return {"extension": phone.username, "greeting_s": greeting, "latencies_ms": latencies}


async def main(spec: dict[str, Any], utterances: list[bytes]) -> dict[str, Any]:
    async with PjRuntime(bind_port=0) as runtime:
        phones = []
        for ext in spec["extensions"]:
            phone = SipPhone(
                username=ext["number"],
                password=ext["password"],
                registrar_host="127.0.0.1",
                registrar_port=spec["registrar_port"],
                runtime=runtime,
            )
            await phone.start()
            phones.append(phone)
        try:
            results = []
            for _ in range(spec.get("rounds", 1)):
                results += await asyncio.gather(
                    *(
                        one_call(phone, spec["target"], utterances, i * spec.get("stagger_s", 0))
                        for i, phone in enumerate(phones)
                    )
                )
        finally:
            for phone in phones:
                await phone.stop()
    return {"calls": results}


if __name__ == "__main__":
    spec = json.loads(Path(sys.argv[1]).read_text())
    out = asyncio.run(main(spec, [Path(p).read_bytes() for p in spec["utterances"]]))
    print(json.dumps(out))
