"""The fake SIP trunk's caller for the egress run: a pjsua2 user agent in the trunk namespace.

Run by bench/egress.py as `ip netns exec cvx-trunk python -m bench.egress_caller …` (pjsua2
allows one endpoint per process, and the process must live in the trunk's namespace). Like a
carrier's trunk it does not register: it sends the INVITE straight to the box, which knows it
by its source address (an `[[ip_peers]]` entry). It waits for the agent's greeting, says each
utterance (8 kHz PCM files, synthesised by the caller's parent with Piper), waits for the
agent's answer and for it to finish, hangs up, and prints one JSON line of what it heard.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np

from appliance.telephony.audio import first_voice_s, voiced_seconds
from appliance.telephony.sip import SipCall, SipPhone

QUIET_THRESHOLD = 500
"""Peak sample below which a second of the agent's audio counts as silence."""


async def wait_voice(call: SipCall, since: int, timeout: float) -> float | None:
    """Seconds after byte offset `since` of received audio until the agent is heard."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        found = first_voice_s(call.received_pcm()[since:])
        if found is not None:
            return found
        if not call.is_active:
            return None
        await asyncio.sleep(0.05)
    return None


async def until_quiet(call: SipCall, seconds: float = 1.2, timeout: float = 40.0) -> bool:
    """Until the agent has been silent for `seconds` (it finished its sentence)."""
    t0 = time.monotonic()
    need = int(seconds * 8000) * 2
    while time.monotonic() - t0 < timeout:
        tail = np.frombuffer(call.received_pcm()[-need:], "<i2")
        if len(tail) * 2 >= need and int(np.abs(tail).max(initial=0)) < QUIET_THRESHOLD:
            return True
        if not call.is_active:
            return False
        await asyncio.sleep(0.1)
    return False


async def place_call(
    target: str, bind: str, number: str, speech: list[bytes]
) -> tuple[dict[str, object], bytes]:
    """The call; returns what happened and the audio the caller heard."""
    out: dict[str, object] = {"target": target, "from": f"{number}@{bind}"}
    async with SipPhone(username=number, bind_host=bind, bind_port=5060, auto_answer=False) as me:
        call = await me.dial(target)
        await call.wait_confirmed(timeout=20)
        t_answer = time.monotonic()
        out["answered"] = True
        out["greeting_after_s"] = await wait_voice(call, 0, 30)
        out["greeting_finished"] = await until_quiet(call)
        answers: list[float | None] = []
        for pcm in speech:
            call.play(pcm)
            await call.wait_played()
            answers.append(await wait_voice(call, len(call.received_pcm()), 40))
            await until_quiet(call)
        out["answers_after_s"] = answers
        out["call_seconds"] = round(time.monotonic() - t_answer, 1)
        rx = call.received_pcm()
        out["heard_voiced_s"] = round(voiced_seconds(rx), 1)
        out["hung_up_by_agent"] = not call.is_active
        await call.hangup()  # a no-op when the agent already hung up
        await call.wait_ended(timeout=10)
    return out, rx


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--target", required=True, help="sip: URI of the line at the box")
    ap.add_argument("--bind", required=True, help="the trunk's own address")
    ap.add_argument("--number", default="+46701234567", help="calling number (From user)")
    ap.add_argument("--rx", type=Path, help="write what the caller heard (8 kHz PCM) here")
    ap.add_argument("speech", nargs="*", type=Path, help="utterances, 8 kHz 16-bit PCM files")
    args = ap.parse_args(argv)
    speech = [p.read_bytes() for p in args.speech]
    result, heard = asyncio.run(place_call(args.target, args.bind, args.number, speech))
    if args.rx is not None:
        args.rx.write_bytes(heard)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
