"""A scripted desk phone for tests and demos: registers as an extension, dials, answers."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from appliance.telephony.sip.call import SipCall
from appliance.telephony.sip.runtime import PjRuntime, SipError, SipTransport
from appliance.telephony.sip.user_agent import UserAgent


class SipPhone(UserAgent):
    """One extension. Incoming calls are queued for `next_incoming()`; with `auto_answer` they
    are answered first (after `answer_delay` seconds of ringing).

    With `runtime=None` the phone owns a runtime bound to `bind_host:bind_port`; with a shared
    runtime it uses `transport` or binds its own there (so two phones never share a contact).
    """

    label = "phone"

    def __init__(
        self,
        *,
        username: str,
        password: str | None = None,
        registrar_host: str | None = None,
        registrar_port: int = 5060,
        display_name: str | None = None,
        auto_answer: bool = True,
        answer_delay: float = 0.0,
        bind_host: str = "127.0.0.1",
        bind_port: int = 0,
        runtime: PjRuntime | None = None,
        transport: SipTransport | None = None,
        register_timeout: float = 5.0,
    ) -> None:
        super().__init__(
            username=username,
            password=password,
            registrar_host=registrar_host,
            registrar_port=registrar_port,
            display_name=display_name,
            bind_host=bind_host,
            bind_port=bind_port,
            runtime=runtime,
            transport=transport,
            register_timeout=register_timeout,
        )
        self.auto_answer = auto_answer
        self._answer_delay = answer_delay
        self._incoming: asyncio.Queue[SipCall] = asyncio.Queue()

    async def start(self) -> None:
        await self._open()

    async def stop(self) -> None:
        await self._close()

    async def __aenter__(self) -> SipPhone:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def dial(
        self,
        number_or_uri: str,
        *,
        headers: Mapping[str, str] | None = None,
        wait_answer: float | None = None,
    ) -> SipCall:
        """Call a number (at the registrar) or a URI; with `wait_answer`, until answered."""
        call = await self.account.dial(number_or_uri, headers=headers)
        if wait_answer is not None:
            await call.wait_confirmed(wait_answer)
        return call

    async def next_incoming(self, timeout: float | None = None) -> SipCall:  # noqa: ASYNC109 - scripted callers want a one-line deadline
        """The next incoming call (already answered when `auto_answer`)."""
        try:
            async with asyncio.timeout(timeout):
                return await self._incoming.get()
        except TimeoutError:
            raise SipError(
                f"phone {self.username} got no incoming call within {timeout:g} s"
            ) from None

    async def _on_incoming(self, call: SipCall) -> None:
        if self.auto_answer:
            await call.ring()
            if self._answer_delay > 0:
                await asyncio.sleep(self._answer_delay)
            await call.answer(200)
        await self._incoming.put(call)
