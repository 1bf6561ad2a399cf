"""The AI line's behaviour until the voice agent takes over: greet, then listen.

It plays the line's greeting, then keeps what the caller says (their 20 ms frames) until they
hang up or `listen_s` passes, and hands it to `on_heard` — proof, end to end, that audio flows
both ways through Asterisk.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from appliance.config import Config
from appliance.telephony.audio import read_wav_pcm8k, tone
from appliance.telephony.sip import SipCall

log = logging.getLogger(__name__)

LINE_HEADER = "X-Callvault-Line"
CALL_HEADER = "X-Callvault-Linkedid"


@dataclass(frozen=True)
class Heard:
    call_id: str
    line: str
    pcm: bytes
    dtmf: str


class GreetAndRecord:
    def __init__(
        self,
        cfg: Config,
        *,
        listen_s: float = 60.0,
        on_heard: Callable[[Heard], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.listen_s = listen_s
        self.on_heard = on_heard
        self._greetings: dict[str, bytes] = {}

    def greeting(self, line_name: str) -> bytes:
        if line_name not in self._greetings:
            line = self.cfg.line_by_name(line_name)
            if line is not None and line.greeting is not None:
                self._greetings[line_name] = read_wav_pcm8k(line.greeting)
            else:
                # A line with no greeting still says something: a short 440 Hz beep.
                self._greetings[line_name] = tone(440.0, 0.5)
        return self._greetings[line_name]

    async def __call__(self, call: SipCall) -> None:
        headers = {k.lower(): v for k, v in call.sip_headers.items()}
        line = headers.get(LINE_HEADER.lower(), "")
        call_id = headers.get(CALL_HEADER.lower(), call.call_id)
        log.info("agent answered call %s on line %s", call_id, line or "?")
        heard = bytearray()
        digits: list[str] = []

        async def listen() -> None:
            async for frame in call.frames():
                heard.extend(frame)

        async def keys() -> None:
            async for digit in call.dtmf():
                digits.append(digit)

        listener = asyncio.create_task(listen())
        keypad = asyncio.create_task(keys())
        try:
            call.play(self.greeting(line))
            await call.wait_played()
            # Hang up ourselves only when the caller has said nothing for the whole window.
            await asyncio.wait_for(call.wait_ended(), self.listen_s)
        except TimeoutError:
            log.info("call %s: listen window of %.0fs over", call_id, self.listen_s)
        finally:
            listener.cancel()
            keypad.cancel()
            await asyncio.gather(listener, keypad, return_exceptions=True)
            if self.on_heard is not None:
                self.on_heard(
                    Heard(call_id=call_id, line=line, pcm=bytes(heard), dtmf="".join(digits))
                )
