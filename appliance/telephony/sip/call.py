"""One SIP call with its audio as 20 ms PCM frames and its DTMF digits, for asyncio code.

Threads involved: pj callbacks about the call run on the runtime thread, media callbacks
(`onFrameReceived` / `onFrameRequested`) on pjmedia's clock thread, and the public API on the
asyncio loop. State crosses to the loop only through `loop.call_soon_threadsafe`; the playback
buffer is the one structure shared under a lock.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from enum import StrEnum
from typing import Any, NamedTuple

import pjsua2 as pj

from appliance.telephony.sip.runtime import PjRuntime, SipError, pj_error_text

log = logging.getLogger(__name__)

SAMPLE_RATE = 8000
FRAME_MS = 20
FRAME_BYTES = SAMPLE_RATE * FRAME_MS // 1000 * 2  # 16-bit mono
_SILENCE = bytes(FRAME_BYTES)


class CallState(StrEnum):
    NULL = "NULL"
    CALLING = "CALLING"
    INCOMING = "INCOMING"
    EARLY = "EARLY"
    CONNECTING = "CONNECTING"
    CONFIRMED = "CONFIRMED"
    DISCONNECTED = "DISCONNECTED"


_STATES = {
    pj.PJSIP_INV_STATE_NULL: CallState.NULL,
    pj.PJSIP_INV_STATE_CALLING: CallState.CALLING,
    pj.PJSIP_INV_STATE_INCOMING: CallState.INCOMING,
    pj.PJSIP_INV_STATE_EARLY: CallState.EARLY,
    pj.PJSIP_INV_STATE_CONNECTING: CallState.CONNECTING,
    pj.PJSIP_INV_STATE_CONFIRMED: CallState.CONFIRMED,
    pj.PJSIP_INV_STATE_DISCONNECTED: CallState.DISCONNECTED,
}


class CallEnd(NamedTuple):
    """The last SIP status of a call that ended (e.g. 200 "Normal call clearing", 486 ...)."""

    status_code: int
    reason: str


def post(loop: asyncio.AbstractEventLoop, fn: Callable[..., object], *args: object) -> None:
    """Schedule `fn(*args)` on `loop` from a pj thread; a closed loop means nobody listens."""
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:
        log.debug("event loop closed; dropped %s", getattr(fn, "__name__", fn))


def parse_sip_headers(message: str) -> dict[str, str]:
    """Headers of a raw SIP message, repeated ones joined with ", " (RFC 3261 7.3.1)."""
    head = re.split(r"\r?\n\r?\n", message, maxsplit=1)[0]
    lines = re.split(r"\r?\n", head)[1:]  # drop the request/status line
    headers: dict[str, str] = {}
    last: str | None = None
    for line in lines:
        if line[:1] in (" ", "\t") and last is not None:
            headers[last] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        name, value = name.strip(), value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
        last = name
    return headers


_NAME_ADDR = re.compile(r'^\s*(?:"(?P<q>(?:[^"\\]|\\.)*)"|(?P<t>[^<"]*?))\s*<(?P<uri>[^>]*)>')
_URI_USER = re.compile(r"^(?:sips?|tel):(?P<user>[^@;>]+)")


def parse_name_addr(value: str) -> tuple[str, str, str]:
    """(display name, user part, uri) of a From/To style value; missing parts are ""."""
    match = _NAME_ADDR.match(value)
    if match:
        name = (match.group("q") if match.group("q") is not None else match.group("t")) or ""
        uri = match.group("uri")
    else:
        name, uri = "", value.split(";", 1)[0].strip()
    user = _URI_USER.match(uri)
    return name.strip(), (user.group("user") if user else ""), uri


class _PjCall(pj.Call):  # type: ignore[misc]
    def __init__(self, owner: SipCall, account: Any, call_id: int) -> None:
        super().__init__(account, call_id)
        self._owner: SipCall | None = owner

    def onCallState(self, prm: Any) -> None:
        if self._owner is not None:
            self._owner.pj_on_state()

    def onCallMediaState(self, prm: Any) -> None:
        if self._owner is not None:
            self._owner.pj_on_media_state()

    def onDtmfDigit(self, prm: Any) -> None:
        if self._owner is not None:
            self._owner.pj_on_dtmf(str(prm.digit))


class _FramePort(pj.AudioMediaPort):  # type: ignore[misc]
    """Runs on pjmedia's clock thread, so it only touches the owner's thread-safe parts."""

    def __init__(self, owner: SipCall) -> None:
        super().__init__()
        self._owner: SipCall | None = owner

    def _live_owner(self) -> SipCall | None:
        # While the port is being deallocated on the runtime thread, its __dict__ is already
        # cleared but the C++ port is still in the conference bridge for a moment: the media
        # thread can call back into this half-destroyed object. getattr keeps that harmless.
        owner: SipCall | None = getattr(self, "_owner", None)
        return owner

    def onFrameReceived(self, frame: Any) -> None:
        owner = self._live_owner()
        if owner is not None and frame.type == pj.PJMEDIA_FRAME_TYPE_AUDIO and frame.size:
            # tuple() first: it is ~2x faster than bytes() over a SWIG ByteVector.
            owner.media_received(bytes(tuple(frame.buf)))

    def onFrameRequested(self, frame: Any) -> None:
        owner = self._live_owner()
        frame.type = pj.PJMEDIA_FRAME_TYPE_AUDIO
        frame.buf = pj.ByteVector(owner.media_next_frame() if owner is not None else _SILENCE)
        frame.size = FRAME_BYTES


class SipCall:
    """A call leg. Created by `SipAccount` (incoming, or `dial()`), never directly."""

    def __init__(
        self,
        runtime: PjRuntime,
        loop: asyncio.AbstractEventLoop,
        *,
        incoming: bool,
        sip_headers: Mapping[str, str] | None = None,
        frame_queue_max: int = 250,
        max_received_seconds: float = 120.0,
    ) -> None:
        self._runtime = runtime
        self._loop = loop
        self.incoming = incoming
        self.sip_headers: dict[str, str] = dict(sip_headers or {})
        # Loop-side mirror of the call, updated from pj callbacks.
        self._state = CallState.NULL
        self._call_id = ""
        self._remote_uri = ""
        self._end: CallEnd | None = None
        self._confirmed = asyncio.Event()
        self._ended = asyncio.Event()
        self._frames: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=frame_queue_max)
        self.frames_dropped = 0
        self.dtmf_queue: asyncio.Queue[str] = asyncio.Queue()
        self._received = bytearray()
        self._max_received = int(max_received_seconds * SAMPLE_RATE) * 2
        # Playback, shared with the media thread.
        self._play_lock = threading.Lock()
        self._play_buf = bytearray()
        self._play_enqueued = 0  # sequence of play() calls
        self._play_drained_seq = 0  # loop side: highest sequence known fully sent
        self._played = asyncio.Event()
        self._played.set()
        # pj objects: created, used and released on the runtime thread only.
        self._pj_call: Any = None
        self._port: Any = None
        self._on_released: list[Callable[[SipCall], None]] = []

    def __repr__(self) -> str:
        kind = "in" if self.incoming else "out"
        return f"<SipCall {kind} {self._remote_uri or '?'} {self._state}>"

    # ---- properties (loop side) --------------------------------------------------------------

    @property
    def state(self) -> CallState:
        return self._state

    @property
    def call_id(self) -> str:
        """The SIP Call-ID."""
        return self._call_id

    @property
    def remote_uri(self) -> str:
        return self._remote_uri

    @property
    def remote_caller_id_name(self) -> str:
        return parse_name_addr(self._remote_uri)[0]

    @property
    def remote_caller_id_number(self) -> str:
        return parse_name_addr(self._remote_uri)[1]

    @property
    def is_active(self) -> bool:
        return self._state is not CallState.DISCONNECTED and self._end is None

    @property
    def end(self) -> CallEnd | None:
        return self._end

    # ---- call control ----------------------------------------------------------------------

    async def ring(self) -> None:
        """Send 180 Ringing (incoming calls)."""
        await self._runtime.run(self._pj_answer, 180)

    async def answer(self, status_code: int = 200) -> None:
        await self._runtime.run(self._pj_answer, status_code)

    async def hangup(self, status_code: int = 0) -> None:
        """End the call (BYE, CANCEL or a final response as fits); no-op once it has ended."""
        if not self.is_active:
            return
        await self._runtime.run(self._pj_hangup, status_code)

    async def dial_dtmf(self, digits: str) -> None:
        """Send DTMF (RFC 4733 events) to the remote party."""
        await self._runtime.run(self._pj_dial_dtmf, digits)

    async def wait_confirmed(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 - scripted callers want a one-line deadline
        """Until the call is answered; raises SipError if it ends first."""
        async with asyncio.timeout(timeout):
            confirmed = asyncio.ensure_future(self._confirmed.wait())
            ended = asyncio.ensure_future(self._ended.wait())
            try:
                await asyncio.wait({confirmed, ended}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                confirmed.cancel()
                ended.cancel()
        if not self._confirmed.is_set():
            end = self._end or CallEnd(0, "unknown")
            raise SipError(
                f"call to {self._remote_uri or '?'} ended before it was answered: "
                f"{end.status_code} {end.reason}"
            )

    async def wait_ended(self, timeout: float | None = None) -> CallEnd:  # noqa: ASYNC109 - scripted callers want a one-line deadline
        async with asyncio.timeout(timeout):
            await self._ended.wait()
        assert self._end is not None
        return self._end

    # ---- audio in --------------------------------------------------------------------------

    async def frames(self) -> AsyncIterator[bytes]:
        """Caller audio, 320-byte frames (20 ms, 8 kHz mono s16le), until the call ends."""
        while True:
            frame = await self._frames.get()
            if frame is None:
                self._frames.put_nowait(None)  # other iterators end too
                return
            yield frame

    def received_pcm(self) -> bytes:
        """All audio received so far (capped at `max_received_seconds`, oldest kept)."""
        return bytes(self._received)

    async def dtmf(self) -> AsyncIterator[str]:
        """DTMF digits as they arrive, until the call ends (then drains what is queued)."""
        while True:
            if self.dtmf_queue.empty() and self._ended.is_set():
                return
            get = asyncio.ensure_future(self.dtmf_queue.get())
            ended = asyncio.ensure_future(self._ended.wait())
            try:
                await asyncio.wait({get, ended}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                ended.cancel()
                if not get.done():
                    get.cancel()
            if get.done() and not get.cancelled():
                yield get.result()

    # ---- audio out -------------------------------------------------------------------------

    def play(self, pcm: bytes) -> None:
        """Queue 16-bit 8 kHz mono PCM for sending; returns at once."""
        if len(pcm) % 2:
            raise ValueError("PCM must be whole 16-bit samples (even byte count)")
        if not pcm:
            return
        with self._play_lock:
            self._play_buf += pcm
            self._play_enqueued += 1
        self._played.clear()

    def clear_playback(self) -> None:
        """Drop queued audio at once (barge-in)."""
        with self._play_lock:
            self._play_buf.clear()
            seq = self._play_enqueued
        self._on_drained(seq)

    async def wait_played(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 - scripted callers want a one-line deadline
        """Until everything queued by `play()` was sent (or the call ended)."""
        async with asyncio.timeout(timeout):
            ended = asyncio.ensure_future(self._ended.wait())
            played = asyncio.ensure_future(self._played.wait())
            try:
                await asyncio.wait({played, ended}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                ended.cancel()
                played.cancel()

    @property
    def playback_pending_bytes(self) -> int:
        with self._play_lock:
            return len(self._play_buf)

    # ---- media thread ----------------------------------------------------------------------

    def media_received(self, data: bytes) -> None:
        post(self._loop, self._on_frame, data)

    def media_next_frame(self) -> bytes:
        with self._play_lock:
            if not self._play_buf:
                return _SILENCE
            chunk = bytes(self._play_buf[:FRAME_BYTES])
            del self._play_buf[:FRAME_BYTES]
            drained = None if self._play_buf else self._play_enqueued
        if drained is not None:
            post(self._loop, self._on_drained, drained)
        if len(chunk) < FRAME_BYTES:
            chunk += _SILENCE[len(chunk) :]
        return chunk

    # ---- loop-side handlers of pj events ---------------------------------------------------

    def _on_frame(self, data: bytes) -> None:
        self._received += data
        overflow = len(self._received) - self._max_received
        if overflow > 0:
            del self._received[:overflow]
        if self._ended.is_set():
            return
        if self._frames.full():
            self._frames.get_nowait()
            self.frames_dropped += 1
        self._frames.put_nowait(data)

    def _on_drained(self, seq: int) -> None:
        # A drain report can race a newer play(): only the newest sequence counts as done.
        self._play_drained_seq = max(self._play_drained_seq, seq)
        with self._play_lock:
            done = self._play_drained_seq >= self._play_enqueued and not self._play_buf
        if done:
            self._played.set()

    def _on_info(self, state: CallState, call_id: str, remote_uri: str) -> None:
        self._state = state
        self._call_id = call_id or self._call_id
        self._remote_uri = remote_uri or self._remote_uri
        if state is CallState.CONFIRMED:
            self._confirmed.set()

    def _on_ended(self, end: CallEnd) -> None:
        if self._end is not None:
            return
        self._state = CallState.DISCONNECTED
        self._end = end
        self._ended.set()
        self._played.set()
        if self._frames.full():
            self._frames.get_nowait()
            self.frames_dropped += 1
        self._frames.put_nowait(None)

    def _on_dtmf(self, digit: str) -> None:
        self.dtmf_queue.put_nowait(digit)

    # ---- runtime thread --------------------------------------------------------------------

    def pj_attach(self, account: Any, call_id: int = -1) -> Any:
        """Create the pj Call (`call_id` is the incoming call's id) and start tracking it."""
        self._pj_call = _PjCall(self, account, call_id)
        self._runtime.pj_track_call(self)
        return self._pj_call

    def pj_add_release_hook(self, hook: Callable[[SipCall], None]) -> None:
        self._on_released.append(hook)

    def pj_on_state(self) -> None:
        if self._pj_call is None:
            return
        info = self._pj_call.getInfo()
        state = _STATES.get(info.state, CallState.NULL)
        post(self._loop, self._on_info, state, str(info.callIdString), str(info.remoteUri))
        if state is CallState.DISCONNECTED:
            end = CallEnd(int(info.lastStatusCode), str(info.lastReason))
            post(self._loop, self._on_ended, end)
            # Deleting the Call inside its own callback is unsafe; do it right after.
            self._runtime.defer(self.pj_release)

    def pj_on_media_state(self) -> None:
        if self._pj_call is None:
            return
        info = self._pj_call.getInfo()
        if self._port is None:
            self._port = self._pj_create_port(int(info.id))
        # The conference slot can change on every media update (codec-lock re-INVITE), so
        # reconnect each time or the port silently listens to a dead slot.
        for media in info.media:
            if media.type != pj.PJMEDIA_TYPE_AUDIO or media.status != pj.PJSUA_CALL_MEDIA_ACTIVE:
                continue
            audio = self._pj_call.getAudioMedia(int(media.index))
            audio.startTransmit(self._port)
            self._port.startTransmit(audio)

    def pj_on_dtmf(self, digit: str) -> None:
        post(self._loop, self._on_dtmf, digit)

    def pj_refresh(self) -> None:
        """Publish the call's current info to the loop side (after creation)."""
        if self._pj_call is not None:
            info = self._pj_call.getInfo()
            state = _STATES.get(info.state, CallState.NULL)
            post(self._loop, self._on_info, state, str(info.callIdString), str(info.remoteUri))

    def pj_release(self) -> None:
        """Drop every pj object of this call, here on the runtime thread."""
        port, call = self._port, self._pj_call
        self._port = None
        self._pj_call = None
        if call is not None and call.isActive():
            try:
                call.hangup(pj.CallOpParam())
            except pj.Error as err:
                log.warning("hangup while releasing %r failed: %s", self, pj_error_text(err))
            # It never reached DISCONNECTED on its own: tell waiters it is gone.
            post(self._loop, self._on_ended, CallEnd(0, "released at shutdown"))
        if port is not None:
            # Never deleted while the conference clock runs: the clock thread may be inside
            # this port's callback, and freeing it then corrupts the heap (seen as segfaults
            # in unrelated code). Ports go back to the runtime's pool and are reused.
            port._owner = None
            self._runtime.pj_return_port(port)
        if call is not None:
            call._owner = None
        del port, call
        self._runtime.pj_untrack_call(self)
        hooks, self._on_released = self._on_released, []
        for hook in hooks:
            hook(self)

    def pj_make_call(self, uri: str, headers: Mapping[str, str]) -> None:
        prm = pj.CallOpParam(True)
        prm.opt.audioCount = 1
        prm.opt.videoCount = 0
        for name, value in headers.items():
            header = pj.SipHeader()
            header.hName = name
            header.hValue = value
            prm.txOption.headers.append(header)
        self._pj_call.makeCall(uri, prm)

    def _pj_create_port(self, pj_call_id: int) -> Any:
        port = self._runtime.pj_take_port()
        if port is None:
            fmt = pj.MediaFormatAudio()
            fmt.init(pj.PJMEDIA_FORMAT_PCM, SAMPLE_RATE, 1, FRAME_MS * 1000, 16)
            port = _FramePort(self)
            port.createPort(f"callvault{self._runtime.pj_next_port_number()}", fmt)
        port._owner = self
        return port

    def _pj_answer(self, status_code: int) -> None:
        if self._pj_call is None:
            raise SipError(f"cannot answer {self!r}: the call has ended")
        prm = pj.CallOpParam()
        prm.statusCode = status_code
        try:
            self._pj_call.answer(prm)
        except pj.Error as err:
            raise SipError(
                f"answer {status_code} on {self!r} failed: {pj_error_text(err)}"
            ) from None

    def _pj_hangup(self, status_code: int) -> None:
        if self._pj_call is None or not self._pj_call.isActive():
            return
        prm = pj.CallOpParam()
        prm.statusCode = status_code
        try:
            self._pj_call.hangup(prm)
        except pj.Error as err:
            raise SipError(f"hangup of {self!r} failed: {pj_error_text(err)}") from None

    def _pj_dial_dtmf(self, digits: str) -> None:
        if self._pj_call is None:
            raise SipError(f"cannot send DTMF on {self!r}: the call has ended")
        try:
            self._pj_call.dialDtmf(digits)
        except pj.Error as err:
            raise SipError(f"DTMF {digits!r} on {self!r} failed: {pj_error_text(err)}") from None
