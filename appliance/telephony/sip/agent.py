"""The "agent" SIP endpoint: Asterisk routes AI lines here; each call runs the line handler."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from appliance.telephony.sip.call import SipCall
from appliance.telephony.sip.runtime import PjRuntime, SipError, SipTransport
from appliance.telephony.sip.user_agent import UserAgent

log = logging.getLogger(__name__)

CallHandler = Callable[[SipCall], Awaitable[None]]

_ANSWER_TIMEOUT_S = 10.0


class SipAgent(UserAgent):
    """Answers every incoming call (180, then 200) and runs `handler(call)` as a task per call.

    When the handler returns the call is hung up if still up. Without `registrar_host` the agent
    is a local peer at `sip:<username>@<bind_host>:<port>` (tests). With `runtime=None` the agent
    owns a runtime bound to `bind_host:bind_port`; with a shared runtime it uses `transport`
    or binds its own on it.
    """

    label = "agent"

    def __init__(
        self,
        *,
        handler: CallHandler,
        username: str = "agent",
        password: str | None = None,
        registrar_host: str | None = None,
        registrar_port: int = 5060,
        bind_host: str = "127.0.0.1",
        bind_port: int = 0,
        max_calls: int = 32,
        runtime: PjRuntime | None = None,
        transport: SipTransport | None = None,
        register_timeout: float = 5.0,
        fallback: CallHandler | None = None,
    ) -> None:
        super().__init__(
            username=username,
            password=password,
            registrar_host=registrar_host,
            registrar_port=registrar_port,
            display_name=None,
            bind_host=bind_host,
            bind_port=bind_port,
            runtime=runtime,
            transport=transport,
            register_timeout=register_timeout,
            max_calls=max_calls,
        )
        self.handler = handler
        # What a caller hears when the line behaviour crashes mid-call (a model process died,
        # a bug): the line's recorded announcement rather than dead air or a dropped call.
        self.fallback = fallback
        self.calls_fallen_back = 0
        self.max_calls = max_calls
        self._tasks: dict[SipCall, asyncio.Task[None]] = {}
        self._stopping = False
        self.calls_handled = 0
        self.calls_rejected = 0

    @property
    def port(self) -> int:
        return self.transport.port

    @property
    def active_calls(self) -> list[SipCall]:
        return [call for call in self._tasks if call.is_active]

    async def start(self) -> None:
        await self._open()

    async def stop(self) -> None:
        """Cancel the handlers, hang up, unregister and (if owned) stop the runtime."""
        self._stopping = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await self._close()
        finally:
            self._stopping = False

    async def __aenter__(self) -> SipAgent:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _on_incoming(self, call: SipCall) -> None:
        if self._stopping or len(self.active_calls) >= self.max_calls:
            self.calls_rejected += 1
            log.warning("agent busy (%d calls); rejecting %r", len(self.active_calls), call)
            await call.hangup(486)
            return
        task = asyncio.ensure_future(self._run_call(call))
        self._tasks[call] = task
        task.add_done_callback(lambda _t: self._tasks.pop(call, None))

    async def _run_call(self, call: SipCall) -> None:
        try:
            await call.ring()
            await call.answer(200)
            await call.wait_confirmed(_ANSWER_TIMEOUT_S)
            self.calls_handled += 1
            await self.handler(call)
        except SipError as err:
            log.warning("call %r failed: %s", call, err)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("line handler failed on %r", call)
            await self._fall_back(call)
        finally:
            await self._hangup_quietly(call)

    async def _fall_back(self, call: SipCall) -> None:
        if self.fallback is None or not call.is_active:
            return
        self.calls_fallen_back += 1
        log.error("call %r: line handler failed; playing the fallback announcement", call)
        try:
            await self.fallback(call)
        except SipError as err:
            log.warning("fallback on %r failed: %s", call, err)
        except Exception:
            log.exception("fallback handler failed on %r", call)

    async def _hangup_quietly(self, call: SipCall) -> None:
        if not call.is_active or self._runtime is None or not self._runtime.running:
            return
        try:
            # Shielded: a cancelled handler must still release the call on the SIP side.
            await asyncio.shield(call.hangup())
        except SipError as err:
            log.warning("hangup of %r failed: %s", call, err)
