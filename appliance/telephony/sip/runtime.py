"""The process-wide pjsua2 endpoint, owned by one dedicated thread.

pjsua2 is not safe to drive from arbitrary threads and its Python GC interplay is fragile, so
every pjsua2 call made by this package runs on the runtime thread: other threads hand work to
it with `submit()` / `run()`. Functions and methods whose name starts with `pj_` or `_pj_` must
only be called on that thread.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import gc
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Protocol, TypeVar, TypeVarTuple

import pjsua2 as pj

from appliance.errors import CallvaultError

log = logging.getLogger(__name__)
_pj_log = logging.getLogger("callvault.pjsip")

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

# How long stop() lets hung-up calls reach DISCONNECTED before releasing them regardless.
_HANGUP_GRACE_S = 2.0
_JOIN_TIMEOUT_S = 15.0

_active_lock = threading.Lock()
_active: PjRuntime | None = None


async def _in_daemon_thread(fn: Callable[[], None]) -> None:
    """Run a blocking start/stop off the loop without leaving an executor thread behind."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def settle(exc: BaseException | None) -> None:
        if done.cancelled():
            return
        if exc is None:
            done.set_result(None)
        else:
            done.set_exception(exc)

    def body() -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the awaiting task
            loop.call_soon_threadsafe(settle, exc)
        else:
            loop.call_soon_threadsafe(settle, None)

    thread = threading.Thread(target=body, name="pjsua2-lifecycle", daemon=True)
    thread.start()
    await asyncio.shield(done)
    thread.join()  # it has only its return left to do; callers may count threads next


@contextlib.contextmanager
def _stdout_silenced() -> Iterator[None]:
    """pjlib prints its start-up banner to fd 1 at level 5 before any log config can apply;
    an appliance's stdout is its journal, so those lines are dropped (this takes ~1 ms)."""
    if sys.stdout is not None:
        sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no stdout at all: nothing to protect
        yield
        return
    try:
        with Path(os.devnull).open("wb") as devnull:
            os.dup2(devnull.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


class SipError(CallvaultError):
    """A SIP operation failed; the message names what was attempted and why it failed."""


def pj_error_text(err: Any) -> str:
    """A one-line description of a `pjsua2.Error` (which is not a str-friendly exception)."""
    reason = getattr(err, "reason", "") or str(err)
    title = getattr(err, "title", "")
    return f"{reason} [{title}]" if title else str(reason)


@dataclass(frozen=True)
class SipTransport:
    """A bound UDP transport: `port` is the real port even when 0 (ephemeral) was asked for."""

    id: int
    host: str
    port: int


class PjOwned(Protocol):
    """Something holding pj objects that the runtime must release before `libDestroy`."""

    def pj_release(self) -> None: ...


class _LogWriter(pj.LogWriter):  # type: ignore[misc]
    # pj would otherwise print to stdout/stderr; routing through logging lets the app decide.
    _LEVELS: ClassVar[dict[int, int]] = {
        0: logging.CRITICAL,
        1: logging.ERROR,
        2: logging.WARNING,
        3: logging.INFO,
    }

    def write(self, entry: Any) -> None:
        level = self._LEVELS.get(int(entry.level), logging.DEBUG)
        msg = str(entry.msg).rstrip()
        # Closing an account whose REGISTER is still unanswered (registrar down) makes pjsua
        # fail the un-REGISTER with EBUSY; the registration failure itself is already reported.
        if "send REGISTER" in msg and "PJSIP_EBUSY" in msg:
            level = logging.DEBUG
        _pj_log.log(level, "%s", msg)


class PjRuntime:
    """The one pjsua2 Endpoint of this process, with a UDP transport on `bind_host:bind_port`.

    Start with `start()` (or `async with`), stop with `stop()` / `aclose()`; only one runtime may
    be running per process.
    """

    def __init__(
        self,
        *,
        bind_host: str = "127.0.0.1",
        bind_port: int = 0,
        max_calls: int = 32,
        log_level: int = 1,
        codecs: tuple[str, ...] = ("PCMU/8000", "PCMA/8000"),
    ) -> None:
        self._bind_host = bind_host
        self._bind_port = bind_port
        self._max_calls = max_calls
        self._log_level = log_level
        self._codecs = codecs
        # A command is called with None to run it, or with an exception to fail it unrun.
        self._commands: queue.SimpleQueue[Callable[[BaseException | None], None]] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._stop_requested = threading.Event()
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._running = False
        self._submit_lock = threading.Lock()
        self._transport: SipTransport | None = None
        # Everything holding pj objects; touched only on the runtime thread.
        self._calls: set[PjOwned] = set()
        self._accounts: set[PjOwned] = set()
        # Media ports outlive their calls (see SipCall.pj_release); freed only at shutdown,
        # after the conference clock has stopped.
        self._port_pool: list[Any] = []
        self._ports_created = 0
        self._ep: Any = None
        self._log_writer: Any = None

    # ---- lifecycle -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._running

    @property
    def transport(self) -> SipTransport:
        if self._transport is None:
            raise SipError("PjRuntime is not started")
        return self._transport

    @property
    def host(self) -> str:
        return self.transport.host

    @property
    def port(self) -> int:
        return self.transport.port

    def start(self) -> None:
        """Create the endpoint on a new thread; blocks until it is ready or failed."""
        global _active  # noqa: PLW0603 - the process-wide singleton is the point
        with _active_lock:
            if _active is not None:
                raise SipError(
                    "a PjRuntime is already running in this process; pjsua2 allows one endpoint "
                    "per process - share it instead of creating another"
                )
            _active = self
        self._thread = threading.Thread(target=self._main, name="pjsua2", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._start_error is not None:
            self._thread.join(_JOIN_TIMEOUT_S)
            self._release_singleton()
            raise SipError(
                f"could not start the SIP stack on udp:{self._bind_host}:{self._bind_port}: "
                f"{self._start_error}"
            ) from self._start_error
        self._running = True
        atexit.register(self.stop)

    def stop(self) -> None:
        """Hang up every call, shut down accounts, destroy the endpoint and join its thread."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            self._running = False
            return
        if threading.current_thread() is thread:
            raise SipError("PjRuntime.stop() cannot be called from the pjsua2 thread")
        self._stop_requested.set()
        thread.join(_JOIN_TIMEOUT_S)
        if thread.is_alive():
            raise SipError(f"the pjsua2 thread did not stop within {_JOIN_TIMEOUT_S:.0f} s")
        atexit.unregister(self.stop)

    async def aclose(self) -> None:
        await _in_daemon_thread(self.stop)

    async def __aenter__(self) -> PjRuntime:
        await _in_daemon_thread(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ---- running work on the pj thread -----------------------------------------------------

    def in_pj_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def submit(self, fn: Callable[[*Ts], T], *args: *Ts) -> concurrent.futures.Future[T]:
        """Run `fn(*args)` on the runtime thread; thread-safe."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def command(fail: BaseException | None) -> None:
            if not future.set_running_or_notify_cancel():
                return
            if fail is not None:
                future.set_exception(fail)
                return
            try:
                result = fn(*args)
            except Exception as exc:  # noqa: BLE001 - handed to whoever awaits the future
                future.set_exception(exc)
            else:
                future.set_result(result)

        with self._submit_lock:
            if not self._running or self._stop_requested.is_set():
                raise SipError("the SIP runtime is not running")
            self._commands.put(command)
        return future

    async def run(self, fn: Callable[[*Ts], T], *args: *Ts) -> T:
        """`submit()` for asyncio callers."""
        return await asyncio.wrap_future(self.submit(fn, *args))

    def defer(self, fn: Callable[[], None]) -> None:
        """Queue `fn` to run on the runtime thread after the current callback returns.

        Used from pj callbacks for work that must not happen inside them (deleting the Call
        whose callback is running).
        """
        self._commands.put(lambda fail: None if fail is not None else fn())

    async def add_udp_transport(self, host: str, port: int = 0) -> SipTransport:
        """Bind one more UDP transport (e.g. a second local peer in tests)."""
        return await self.run(self.pj_create_transport, host, port)

    async def close_transport(self, transport: SipTransport) -> None:
        """Unbind a transport `add_udp_transport` made: pjsua has a fixed number of slots
        (PJ_ETOOMANY once they are used up), so user agents that come and go give theirs back."""
        await self.run(self.pj_close_transport, transport.id)

    # ---- bookkeeping used by accounts and calls (runtime thread only) ----------------------

    @property
    def pj_endpoint(self) -> Any:
        return self._ep

    def pj_take_port(self) -> Any | None:
        return self._port_pool.pop() if self._port_pool else None

    def pj_return_port(self, port: Any) -> None:
        self._port_pool.append(port)

    def pj_next_port_number(self) -> int:
        self._ports_created += 1
        return self._ports_created

    def pj_live_call_count(self) -> int:
        return len(self._calls)

    def pj_track_call(self, owner: PjOwned) -> None:
        self._calls.add(owner)

    def pj_untrack_call(self, owner: PjOwned) -> None:
        self._calls.discard(owner)

    def pj_track_account(self, owner: PjOwned) -> None:
        self._accounts.add(owner)

    def pj_untrack_account(self, owner: PjOwned) -> None:
        self._accounts.discard(owner)

    # ---- the thread ------------------------------------------------------------------------

    def _main(self) -> None:
        try:
            self._pj_init()
        except Exception as exc:  # noqa: BLE001 - reported to start() and raised there
            self._start_error = exc
            self._pj_destroy()
            self._started.set()
            return
        self._started.set()
        try:
            while not self._stop_requested.is_set():
                self._pj_drain_commands()
                self._ep.libHandleEvents(10)
        finally:
            with self._submit_lock:
                self._running = False
            self._pj_shutdown()
            self._release_singleton()

    def _pj_init(self) -> None:
        ep = pj.Endpoint()
        self._ep = ep
        with _stdout_silenced():
            ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = True
        cfg.uaConfig.maxCalls = self._max_calls
        cfg.uaConfig.userAgent = "Callvault"
        cfg.logConfig.level = self._log_level
        cfg.logConfig.consoleLevel = self._log_level
        cfg.logConfig.msgLogging = 0
        self._log_writer = _LogWriter()
        cfg.logConfig.writer = self._log_writer
        # The conference bridge runs at the telephony rate so 20 ms frames need no resampling.
        cfg.medConfig.clockRate = 8000
        cfg.medConfig.sndClockRate = 8000
        cfg.medConfig.audioFramePtime = 20
        cfg.medConfig.ptime = 20
        cfg.medConfig.channelCount = 1
        # Silence must still flow as frames: downstream VAD and recordings expect continuity.
        cfg.medConfig.noVad = True
        cfg.medConfig.ecTailLen = 0
        ep.libInit(cfg)
        self._transport = self.pj_create_transport(self._bind_host, self._bind_port)
        ep.libStart()
        ep.audDevManager().setNullDev()
        self._pj_set_codecs()

    def _pj_set_codecs(self) -> None:
        # Only the listed codecs are offered, in that order: G.711 is what Asterisk bridges
        # without transcoding and what the voice pipeline expects.
        wanted = [c.lower() for c in self._codecs]
        for info in self._ep.codecEnum2():
            codec_id = str(info.codecId)
            rank = next((i for i, w in enumerate(wanted) if codec_id.lower().startswith(w)), None)
            self._ep.codecSetPriority(codec_id, 0 if rank is None else 255 - rank)

    def pj_create_transport(self, host: str, port: int) -> SipTransport:
        tcfg = pj.TransportConfig()
        tcfg.port = port
        tcfg.boundAddress = host
        try:
            tid = int(self._ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg))
        except pj.Error as err:
            raise SipError(f"cannot bind SIP udp:{host}:{port}: {pj_error_text(err)}") from None
        local_name = str(self._ep.transportGetInfo(tid).localName)
        bound_port = int(local_name.rsplit(":", 1)[1])
        return SipTransport(id=tid, host=host, port=bound_port)

    def pj_close_transport(self, tid: int) -> None:
        try:
            self._ep.transportClose(tid)
        except pj.Error as err:
            log.warning("SIP transport %d not closed: %s", tid, pj_error_text(err))

    def _pj_drain_commands(self) -> None:
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            command(None)

    def _pj_shutdown(self) -> None:
        ep = self._ep
        if ep is None:
            return
        try:
            if self._calls:
                ep.hangupAllCalls()
                deadline = time.monotonic() + _HANGUP_GRACE_S
                while self._calls and time.monotonic() < deadline:
                    self._pj_drain_commands()
                    ep.libHandleEvents(10)
            for owner in list(self._calls):
                owner.pj_release()
            for owner in list(self._accounts):
                owner.pj_release()
            self._pj_drain_commands()
        finally:
            self._calls.clear()
            self._accounts.clear()
            self._pj_fail_pending_commands()
            self._pj_destroy()

    def _pj_fail_pending_commands(self) -> None:
        # Commands submitted during shutdown would otherwise leave their futures pending forever.
        stopped = SipError("the SIP runtime stopped before this operation ran")
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            command(stopped)

    def _pj_destroy(self) -> None:
        if self._ep is not None and self._port_pool:
            # Stop the conference clock (the null sound device) before freeing media ports, so
            # no clock-thread callback can run inside a port being freed.
            try:
                self._ep.audDevManager().setNoDev()
            except pj.Error:
                log.exception("could not stop the audio clock before freeing media ports")
        self._port_pool.clear()
        # Dangling pj objects in reference cycles would be destroyed by a later GC run on some
        # other thread after libDestroy (pjmedia_conf_remove_port assertion): collect them now.
        gc.collect()
        if self._ep is not None:
            try:
                self._ep.libDestroy()
            except pj.Error:
                log.exception("pjsua2 libDestroy failed")
        self._ep = None
        gc.collect()
        self._log_writer = None

    def _release_singleton(self) -> None:
        global _active  # noqa: PLW0603
        with _active_lock:
            if _active is self:
                _active = None
