"""A SIP account (user agent identity): registration, incoming calls, outgoing calls."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import pjsua2 as pj

from appliance.telephony.sip.call import SipCall, parse_sip_headers, post
from appliance.telephony.sip.runtime import PjRuntime, SipError, SipTransport, pj_error_text

log = logging.getLogger(__name__)

_PJ_ETOOMANY = 70010

IncomingHandler = Callable[[SipCall], Awaitable[None]]


class _PjAccount(pj.Account):  # type: ignore[misc]
    def __init__(self, owner: SipAccount) -> None:
        super().__init__()
        self._owner: SipAccount | None = owner

    def onRegState(self, prm: Any) -> None:
        if self._owner is not None:
            self._owner.pj_on_reg_state(int(prm.code), str(prm.reason), int(prm.expiration))

    def onIncomingCall(self, prm: Any) -> None:
        owner = self._owner
        if owner is not None and owner.pj_trusts(str(prm.rdata.srcAddress)):
            owner.pj_on_incoming(int(prm.callId), str(prm.rdata.wholeMsg))
            return
        # Torn down (480), or an INVITE that did not come from our registrar (403): a
        # registered agent takes calls only through Asterisk, which authenticated the caller.
        call = pj.Call(self, prm.callId)
        reply = pj.CallOpParam()
        reply.statusCode = 480 if owner is None else 403
        call.hangup(reply)


class SipAccount:
    """A user agent identity on the shared runtime.

    With `registrar_host` set, it registers `sip:<username>@<host>:<port>` with digest auth;
    without, it is a local peer reachable at `sip:<username>@<transport host>:<transport port>`.
    Incoming calls are handed to `on_incoming` on the event loop (it decides to answer); without
    a handler they are refused with 480.
    """

    def __init__(
        self,
        runtime: PjRuntime,
        *,
        username: str,
        password: str | None = None,
        registrar_host: str | None = None,
        registrar_port: int = 5060,
        transport: SipTransport | None = None,
        display_name: str | None = None,
        on_incoming: IncomingHandler | None = None,
        reg_timeout_sec: int = 300,
        unreg_wait_msec: int = 1000,
    ) -> None:
        self._runtime = runtime
        self.username = username
        self._password = password
        self.registrar_host = registrar_host
        self.registrar_port = registrar_port
        self._transport = transport
        self._display_name = display_name
        self.on_incoming = on_incoming
        self._reg_timeout_sec = reg_timeout_sec
        self._unreg_wait_msec = unreg_wait_msec
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reg_event = asyncio.Event()
        self._reg_status: tuple[int, str, int] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._calls: set[SipCall] = set()  # loop-side view of live calls
        self._pj_acc: Any = None

    # ---- identity --------------------------------------------------------------------------

    @property
    def transport(self) -> SipTransport:
        return self._transport or self._runtime.transport

    @property
    def uri(self) -> str:
        """The account's address of record."""
        if self.registrar_host is not None:
            return f"sip:{self.username}@{self.registrar_host}:{self.registrar_port}"
        return f"sip:{self.username}@{self.transport.host}:{self.transport.port}"

    @property
    def label(self) -> str:
        return self.uri.removeprefix("sip:")

    @property
    def registered(self) -> bool:
        status = self._reg_status
        return status is not None and status[0] // 100 == 2 and status[2] > 0

    @property
    def last_registration_status(self) -> tuple[int, str] | None:
        status = self._reg_status
        return None if status is None else (status[0], status[1])

    @property
    def calls(self) -> frozenset[SipCall]:
        return frozenset(c for c in self._calls if c.is_active)

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the account; registration (if any) starts now, see `wait_registered()`."""
        if self._loop is not None:
            raise SipError(f"account {self.label} is already started")
        self._loop = asyncio.get_running_loop()
        await self._runtime.run(self._pj_create)

    async def wait_registered(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - scripted callers want a one-line deadline
        """Until the registrar accepted us; SipError naming the status on failure or timeout."""
        if self.registrar_host is None:
            return
        try:
            async with asyncio.timeout(timeout):
                while True:
                    await self._reg_event.wait()
                    self._reg_event.clear()
                    status = self._reg_status
                    if self.registered:
                        return
                    if status is not None and status[0] >= 300:
                        raise SipError(self._reg_failure_text(status[0], status[1]))
        except TimeoutError:
            last = self._reg_status
            detail = (
                f"last status {last[0]} {last[1]}"
                if last is not None
                else f"no answer from {self.registrar_host}:{self.registrar_port} "
                "(is the registrar running and reachable?)"
            )
            raise SipError(
                f"registration of {self.label} did not succeed within {timeout:g} s: {detail}"
            ) from None

    def _reg_failure_text(self, code: int, reason: str) -> str:
        hint = {
            401: "wrong password",
            403: "wrong password or forbidden",
            404: "unknown user",
            407: "wrong password",
            408: "no answer from the registrar",
            503: "registrar unreachable",
        }.get(code, "registration refused")
        return f"{hint} for {self.label}: {code} {reason}"

    async def close(self) -> None:
        """Hang up this account's calls, unregister and release it."""
        for call in list(self._calls):
            if call.is_active and self._runtime.running:
                await call.hangup()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runtime.running:
            await self._runtime.run(self.pj_release)

    # ---- calls -----------------------------------------------------------------------------

    def target_uri(self, uri_or_number: str) -> str:
        """`sip:`/`sips:`/`tel:` URIs pass through; a number goes to this account's domain."""
        if uri_or_number.startswith(("sip:", "sips:", "tel:")):
            return uri_or_number
        if self.registrar_host is None:
            raise SipError(
                f"cannot dial {uri_or_number!r} from {self.label}: it has no registrar, "
                "give a full sip: URI"
            )
        return f"sip:{uri_or_number}@{self.registrar_host}:{self.registrar_port}"

    async def dial(
        self, uri_or_number: str, *, headers: Mapping[str, str] | None = None
    ) -> SipCall:
        """Start an outgoing call; returns at once (see `SipCall.wait_confirmed()`)."""
        uri = self.target_uri(uri_or_number)
        call = await self._runtime.run(self._pj_dial, uri, dict(headers or {}))
        self._remember(call)
        return call

    def _remember(self, call: SipCall) -> None:
        self._calls = {c for c in self._calls if c.is_active}
        self._calls.add(call)

    # ---- runtime thread --------------------------------------------------------------------

    def _pj_create(self) -> None:
        cfg = pj.AccountConfig()
        display = f'"{self._display_name}" ' if self._display_name else ""
        cfg.idUri = f"{display}<{self.uri}>" if display else self.uri
        cfg.sipConfig.transportId = self.transport.id
        # RTP on the SIP transport's address; a random port base avoids pjsua's fixed 4000
        # colliding (and logging errors) when several accounts or processes share the host.
        media_tp = cfg.mediaConfig.transportConfig
        media_tp.boundAddress = self.transport.host
        media_tp.port = 0
        if self.registrar_host is not None:
            cfg.regConfig.registrarUri = f"sip:{self.registrar_host}:{self.registrar_port}"
            cfg.regConfig.timeoutSec = self._reg_timeout_sec
            cfg.regConfig.retryIntervalSec = 30
            cfg.regConfig.unregWaitMsec = self._unreg_wait_msec
        if self._password is not None:
            cred = pj.AuthCredInfo("digest", "*", self.username, 0, self._password)
            cfg.sipConfig.authCreds.append(cred)
        acc = _PjAccount(self)
        try:
            acc.create(cfg)
        except pj.Error as err:
            acc._owner = None
            raise SipError(
                f"cannot create SIP account {self.label}: {pj_error_text(err)}"
            ) from None
        self._pj_acc = acc
        self._runtime.pj_track_account(self)

    def pj_on_reg_state(self, code: int, reason: str, expiration: int) -> None:
        if self._loop is not None:
            post(self._loop, self._on_reg_state, code, reason, expiration)

    def pj_trusts(self, source: str) -> bool:
        """Whether an INVITE from `source` ("host:port") may ring this account: with a
        registrar, only the registrar's own address (anything else bypasses its auth)."""
        if self.registrar_host is None:
            return True
        host, _, port = source.rpartition(":")
        trusted = host.strip("[]") == self.registrar_host and port == str(self.registrar_port)
        if not trusted:
            log.warning("refused an INVITE to %s from %s: not the registrar", self.label, source)
        return trusted

    def pj_on_incoming(self, pj_call_id: int, whole_msg: str) -> None:
        assert self._loop is not None
        call = SipCall(
            self._runtime, self._loop, incoming=True, sip_headers=parse_sip_headers(whole_msg)
        )
        call.pj_attach(self._pj_acc, pj_call_id)
        call.pj_refresh()
        post(self._loop, self._dispatch_incoming, call)

    def _pj_dial(self, uri: str, headers: dict[str, str]) -> SipCall:
        if self._pj_acc is None:
            raise SipError(f"account {self.label} is not started")
        assert self._loop is not None
        call = SipCall(self._runtime, self._loop, incoming=False)
        call.pj_attach(self._pj_acc)
        try:
            call.pj_make_call(uri, headers)
        except pj.Error as err:
            call.pj_release()
            if int(getattr(err, "status", 0)) == _PJ_ETOOMANY:
                raise SipError(
                    f"cannot call {uri} from {self.label}: the pjsua2 call table is full "
                    f"({self._runtime.pj_live_call_count()} call legs live in this process; "
                    "the pjsua2-python wheel is built with a small PJSUA_MAX_CALLS, 4 legs for "
                    "2.15.1.post1, whatever uaConfig.maxCalls asks)"
                ) from None
            raise SipError(f"cannot call {uri} from {self.label}: {pj_error_text(err)}") from None
        call.pj_refresh()
        return call

    def pj_release(self) -> None:
        acc, self._pj_acc = self._pj_acc, None
        self._runtime.pj_untrack_account(self)
        if acc is None:
            return
        acc._owner = None
        try:
            # Unregisters and deletes the pjsua account; required before dropping the object.
            acc.shutdown()
        except pj.Error as err:
            log.warning("shutdown of account %s failed: %s", self.label, pj_error_text(err))
        del acc

    # ---- loop side -------------------------------------------------------------------------

    def _on_reg_state(self, code: int, reason: str, expiration: int) -> None:
        self._reg_status = (code, reason, expiration)
        self._reg_event.set()
        if code // 100 != 2:
            log.warning("registration of %s: %d %s", self.label, code, reason)

    def _dispatch_incoming(self, call: SipCall) -> None:
        self._remember(call)
        task = asyncio.ensure_future(self._handle_incoming(call))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle_incoming(self, call: SipCall) -> None:
        if self.on_incoming is None:
            await call.hangup(480)
            return
        try:
            await self.on_incoming(call)
        except Exception:
            log.exception("incoming-call handler of %s failed; rejecting %r", self.label, call)
            await call.hangup(500)
