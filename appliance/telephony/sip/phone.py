"""A scripted desk phone for tests and demos: registers as an extension, dials, answers."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from appliance.telephony.sip.account import SipAccount
from appliance.telephony.sip.call import SipCall
from appliance.telephony.sip.runtime import PjRuntime, SipError, SipTransport


class SipPhone:
    """One extension. Incoming calls are queued for `next_incoming()`; with `auto_answer` they
    are answered first (after `answer_delay` seconds of ringing).

    With `runtime=None` the phone owns a runtime bound to `bind_host:bind_port`; with a shared
    runtime it uses `transport` or binds its own there (so two phones never share a contact).
    """

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
        self.username = username
        self._password = password
        self._registrar_host = registrar_host
        self._registrar_port = registrar_port
        self._display_name = display_name
        self.auto_answer = auto_answer
        self._answer_delay = answer_delay
        self._bind_host = bind_host
        self._bind_port = bind_port
        self._runtime = runtime
        self._owns_runtime = runtime is None
        self._transport = transport
        self._register_timeout = register_timeout
        self._account: SipAccount | None = None
        self._incoming: asyncio.Queue[SipCall] = asyncio.Queue()

    @property
    def account(self) -> SipAccount:
        if self._account is None:
            raise SipError(f"phone {self.username} is not started")
        return self._account

    @property
    def runtime(self) -> PjRuntime:
        if self._runtime is None:
            raise SipError("not started")
        return self._runtime

    @property
    def transport(self) -> SipTransport:
        return self.account.transport

    @property
    def uri(self) -> str:
        """This phone's direct address (useful without a registrar)."""
        return f"sip:{self.username}@{self.transport.host}:{self.transport.port}"

    async def start(self) -> None:
        if self._account is not None:
            raise SipError(f"phone {self.username} is already started")
        runtime = self._runtime
        if runtime is None:
            runtime = PjRuntime(bind_host=self._bind_host, bind_port=self._bind_port)
            await runtime.__aenter__()
            self._runtime = runtime
            transport = runtime.transport
        elif self._transport is not None:
            transport = self._transport
        else:
            transport = await runtime.add_udp_transport(self._bind_host, self._bind_port)
        self._account = SipAccount(
            runtime,
            username=self.username,
            password=self._password,
            registrar_host=self._registrar_host,
            registrar_port=self._registrar_port,
            transport=transport,
            display_name=self._display_name,
            on_incoming=self._on_incoming,
        )
        try:
            await self._account.start()
            await self._account.wait_registered(self._register_timeout)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        account, self._account = self._account, None
        try:
            if account is not None:
                await account.close()
        finally:
            if self._owns_runtime and self._runtime is not None:
                runtime, self._runtime = self._runtime, None
                await runtime.aclose()

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
