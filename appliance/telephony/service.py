"""The telephony service: AMI events in, CDRs and recordings out, call control actions.

It keeps a small live model of channels (which call each belongs to, which are the agent's), so
it knows when a call is over and which channel to act on. Every CDR Asterisk emits is written;
after a reconnect (and at start) the CDRs Asterisk wrote to its own file while the appliance was
not listening are reconciled, so none is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from appliance.config import Config, LineConfig
from appliance.errors import CallvaultError
from appliance.privacy import Actor, Identifier, IdentifierError, Pii, Privacy
from appliance.store import CdrRow, Database
from appliance.telephony import cdr as cdrs
from appliance.telephony.ami import AmiClient, AmiError
from appliance.telephony.recordings import RecordingStore, spool_filesystem
from appliance.telephony.render import mixmonitor_args

log = logging.getLogger(__name__)

# Reconcile from a little before the outage: the CDR file and the event stream are not ordered.
RECONCILE_MARGIN_S = 120.0
# Also reconcile now and then without an outage: a CDR whose write failed (disk full, a bug)
# is in Asterisk's file, and this puts it in the store once the cause is gone.
RECONCILE_EVERY_S = 300.0
# How long a finished call's recordings wait in the (tmpfs) spool for the call's CDRs.
INGEST_CDR_WAIT_S = 10.0
# A recording that could not be stored (recordings disk full) stays in the RAM spool and is
# tried again this often, until it fits or the appliance restarts (the start sweep takes it).
INGEST_RETRY_S = 30.0
# While calls are up, the live channel model is checked against Asterisk's own list this often:
# a Hangup the model never saw (an event lost in a reconnect) would otherwise keep a dead call
# "live" for good, and everything that waits for an idle box (post-call work) would wait on it.
CHANNEL_AUDIT_EVERY_S = 60.0
# How long a finished call's spool files get for MixMonitor to finalise their WAV header; a
# file still open after that (Asterisk died mid-write) is stored flagged `incomplete`.
INGEST_FILE_WAIT_S = 10.0
# The flag (last_app) on CDRs the appliance reconstructed for calls Asterisk lost mid-call.
RECONSTRUCTED = "callvault:asterisk-lost-call"


def outage_start(wall_at: float, mono_at: float) -> float:
    """Wall-clock start of an outage that began at `wall_at` (time.time) = `mono_at`
    (time.monotonic), robust to the clock being stepped meanwhile: the earlier of the recorded
    time and now minus the monotonic duration, so CDRs stamped before or after a jump in
    either direction fall inside the reconcile window."""
    elapsed = max(0.0, time.monotonic() - mono_at)
    return min(wall_at, time.time() - elapsed)


def reconstructed_cdrs(cfg: Config, vanished: list[tuple[Channel, float]]) -> list[CdrRow]:
    """CDRs from what the live model knew of a call's channels, ended at the outage start.

    Asterisk's uniqueid is `<epoch>.<n>`: its epoch is when the channel was created. The
    sequence -1 never collides with one of Asterisk's own (uniqueid, sequence) keys.
    """
    rows = []
    for ch, lost_at in vanished:
        try:
            start = float(ch.uniqueid.split(".", 1)[0])
        except ValueError:
            start = lost_at
        line = next((ln.name for ln in cfg.lines if ln.extension == ch.exten), None)
        up = ch.state == "Up"
        row = CdrRow(
            call_id=ch.linkedid, uniqueid=ch.uniqueid, sequence=-1,
            calling_number=ch.caller_number, caller_name="", dialed_number=ch.exten,
            context=ch.context, direction="unknown", line=line, start_at=start,
            answer_at=start if up else None, end_at=max(start, lost_at),
            duration_s=int(max(0.0, lost_at - start)),
            billable_s=int(max(0.0, lost_at - start)) if up else 0,
            disposition="ANSWERED" if up else "FAILED", hangup_cause=None,
            hangup_cause_text="Asterisk stopped during the call (CDR reconstructed)",
            channel=ch.name, dest_channel="", last_app=RECONSTRUCTED, source="reconciled",
        )  # fmt: skip
        rows.append(row)
    return rows


def _date(ts: object) -> str:
    return time.strftime("%Y-%m-%d", time.localtime(float(str(ts))))


class TelephonyError(CallvaultError):
    pass


class DoNotCallError(TelephonyError):
    """The number is on the do-not-call list: it is never dialled."""


@dataclass
class _Listing:
    """Channel events that arrived while one CoreShowChannels list was being read."""

    created: set[str] = field(default_factory=set)
    hung_up: set[str] = field(default_factory=set)

    def saw(self, event: str, uniqueid: str) -> None:
        (self.created if event == "Newchannel" else self.hung_up).add(uniqueid)


@dataclass
class Channel:
    uniqueid: str
    linkedid: str
    name: str
    caller_number: str
    exten: str
    context: str
    state: str = ""

    @classmethod
    def from_event(cls, ev: Mapping[str, str]) -> Channel:
        """From a Newchannel event or a CoreShowChannel list entry (same fields)."""
        uid = ev.get("Uniqueid", "")
        return cls(
            uniqueid=uid,
            linkedid=ev.get("Linkedid", uid),
            name=ev.get("Channel", ""),
            caller_number=ev.get("CallerIDNum", ""),
            exten=ev.get("Exten", ""),
            context=ev.get("Context", ""),
            state=ev.get("ChannelStateDesc", ""),
        )


@dataclass
class Stats:
    events: int = 0
    cdrs_written: int = 0
    cdrs_reconciled: int = 0
    cdr_errors: int = 0
    recordings: int = 0
    recordings_refused: int = 0
    cdrs_reconstructed: int = 0
    reconnects: int = 0
    last_reconcile: dict[str, int] = field(default_factory=dict)


class TelephonyService:
    def __init__(self, cfg: Config, db: Database, privacy: Privacy | None = None) -> None:
        self.cfg = cfg
        self.db = db
        self.privacy = privacy or Privacy(cfg, db)
        self.stats = Stats()
        self.channels: dict[str, Channel] = {}
        self.recordings = RecordingStore(
            cfg.asterisk.host_path(cfg.asterisk.spool_dir), cfg.recordings_dir, db, self.privacy
        )
        self.ami = AmiClient.for_config(cfg, on_event=self._on_event, on_state=self._on_state)
        self._tasks: set[asyncio.Task[None]] = set()
        self._disconnected_at: float | None = None
        self._disconnected_mono = 0.0
        self._alerts: Any = None
        # Calls whose channels vanished during an AMI outage: (channel, outage start) each.
        self._vanished: dict[str, list[tuple[Channel, float]]] = {}
        self._cdr_waiters: list[tuple[str, asyncio.Future[None]]] = []
        self._ingest_scheduled: set[str] = set()
        self._last_activity: dict[str, float] = {}
        self._pending_cdrs: dict[str, int] = {}
        # Channel events seen while a CoreShowChannels list is being read (one entry per list
        # in flight): the list is a snapshot, and events interleave with its items.
        self._listings: list[_Listing] = []
        # Called with the call id once a finished call's recordings are stored (the post-call
        # pipeline: their rows already queued its job; this only wakes it).
        self.on_ingested: Callable[[str], None] | None = None

    # ---- lifecycle
    async def start(self) -> None:
        await self.db.sync_lines(
            [(ln.name, ln.extension, ln.kind, ln.record_legs) for ln in self.cfg.lines]
        )
        fs = await asyncio.to_thread(spool_filesystem, self.recordings.spool)
        if fs not in {"tmpfs", "ramfs"}:
            log.warning(
                "recording spool %s is on %s, not a tmpfs: plaintext audio lands on disk until "
                "it is encrypted at hangup",
                self.recordings.spool,
                fs or "an unknown filesystem",
            )
        # Encrypted halves a killed process left behind (never plaintext: FileVault writes
        # ciphertext to `.part`); their spool originals are still there and are taken again.
        removed = await asyncio.to_thread(self.recordings.remove_partials)
        if removed:
            log.warning("removed %d unfinished encrypted recordings (.part) of a crash", removed)
        await self.ami.connect()
        await self._refresh_channels()
        # Whatever ended while the appliance was down: CDRs from Asterisk's file, files in
        # the spool that no live call writes to.
        await self.reconcile(since=await self._last_cdr_end() - RECONCILE_MARGIN_S, reason="start")
        self._spawn(self._sweep_spool())
        self._spawn(self._reconcile_periodically())
        self._spawn(self._audit_channels_periodically())

    async def stop(self) -> None:
        await self.ami.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("telephony task failed", exc_info=task.exception())

    # ---- events
    def _on_state(self, up: bool) -> None:
        if not up:
            if self._disconnected_at is None:
                self._disconnected_at = time.time()
                self._disconnected_mono = time.monotonic()
            return
        if self._disconnected_at is not None:
            began = outage_start(self._disconnected_at, self._disconnected_mono)
            since = began - RECONCILE_MARGIN_S
            self._disconnected_at = None
            self.stats.reconnects += 1
            self._spawn(self._after_reconnect(since, began))

    async def _after_reconnect(self, since: float, began: float) -> None:
        await self._refresh_channels(lost_at=began)
        await self.reconcile(since=since, reason="reconnect")
        await self._sweep_spool()

    async def _reconcile_periodically(self) -> None:
        while True:
            await asyncio.sleep(RECONCILE_EVERY_S)
            if self.ami.connected:
                await self.reconcile(since=time.time() - 3 * RECONCILE_EVERY_S, reason="periodic")
                await self._sweep_spool()

    async def alert(self, kind: str, message: str, key: str) -> None:
        """Raise an alert (appliance.ops: UI, journal, notifiers); the log has it regardless."""
        log.error("%s: %s", kind, message)
        try:
            if self._alerts is None:
                from appliance.ops.alerts import alerts_from_config

                self._alerts = alerts_from_config(self.db, self.cfg.ops)
            await self._alerts.fire(kind, message, key=key)
        except Exception:  # an alerting failure must not take the call path down with it
            log.exception("could not raise alert %s", kind)

    def _on_event(self, ev: Mapping[str, str]) -> None:
        self.stats.events += 1
        name = ev.get("Event", "")
        if name in {"Newchannel", "Hangup"}:
            for listing in self._listings:
                listing.saw(name, ev.get("Uniqueid", ""))
        if name == "Newchannel":
            ch = Channel.from_event(ev)
            self.channels[ch.uniqueid] = ch
        elif name == "Newstate":
            known = self.channels.get(ev.get("Uniqueid", ""))
            if known is not None:
                known.state = ev.get("ChannelStateDesc", "")
        elif name == "Hangup":
            gone = self.channels.pop(ev.get("Uniqueid", ""), None)
            self._touch(ev.get("Linkedid", ""))
            if gone is not None and not self._live(gone.linkedid):
                self._schedule_ingest(gone.linkedid)
        elif name == "Cdr":
            self._touch(ev.get("LinkedID", ""))
            self._spawn(self._write_cdr(ev))

    def _touch(self, call_id: str) -> None:
        now = time.monotonic()
        self._last_activity[call_id] = now
        if len(self._last_activity) > 10_000:  # bounded: only recent calls are waited on
            self._last_activity = {k: v for k, v in self._last_activity.items() if now - v < 300}

    def _live(self, call_id: str) -> bool:
        return any(ch.linkedid == call_id for ch in self.channels.values())

    def _schedule_ingest(self, call_id: str) -> None:
        if call_id not in self._ingest_scheduled:
            self._ingest_scheduled.add(call_id)
            self._spawn(self._ingest(call_id))

    async def _ingest(self, call_id: str) -> None:
        try:
            # The file key comes from the call's subjects, which its CDRs name: wait for them
            # (they follow the last Hangup within milliseconds). Without a CDR the recording is
            # still encrypted, under a key of its own, rather than left in the spool.
            try:
                await self.wait_cdr(call_id, timeout_s=INGEST_CDR_WAIT_S, settle_s=0.3)
            except TelephonyError:
                if call_id in self._vanished:
                    await self._reconstruct(call_id)
                else:
                    log.warning(
                        "call %s: no CDR yet; encrypting its recordings under a call key", call_id
                    )
            try:
                rows = await self.recordings.ingest_call(call_id, timeout_s=INGEST_FILE_WAIT_S)
            except OSError as exc:
                await self._refused(call_id, exc)
                return
            self.stats.recordings += len(rows)
            if rows and self.on_ingested is not None:
                self.on_ingested(call_id)
        finally:
            self._ingest_scheduled.discard(call_id)
            self._vanished.pop(call_id, None)

    async def _reconstruct(self, call_id: str) -> None:
        """Asterisk went away mid-call (killed, crashed) and never wrote the call's CDR: store
        a flagged one per vanished channel, so the call is not missing from the records."""
        rows = reconstructed_cdrs(self.cfg, self._vanished.get(call_id, []))
        for row in rows:
            if await self.privacy.subjects.add_cdr(row):
                self.stats.cdrs_reconstructed += 1
        log.warning(
            "call %s: Asterisk lost it mid-call and wrote no CDR; stored %d reconstructed "
            "CDR(s), flagged %r",
            call_id,
            len(rows),
            RECONSTRUCTED,
        )
        self._notify(call_id)

    async def _refused(self, call_id: str, exc: OSError) -> None:
        """The recordings disk refused the file: nothing half-written stays (FileVault writes
        `.part` and removes it), the plaintext stays in the RAM spool and is tried again."""
        self.stats.recordings_refused += 1
        full = exc.errno in {errno.ENOSPC, errno.EDQUOT}
        why = "the recordings disk is full" if full else f"cannot write recordings: {exc}"
        await self.alert(
            "recording_refused",
            f"call {call_id}: recording not stored, {why} ({self.recordings.target}); "
            f"kept in the RAM spool and retried every {INGEST_RETRY_S:.0f} s",
            key=str(self.recordings.target),
        )

        async def retry() -> None:
            await asyncio.sleep(INGEST_RETRY_S)
            if self.recordings.spool_files(call_id) and not self._live(call_id):
                self._schedule_ingest(call_id)

        self._spawn(retry())

    def _writing(self, call_id: str) -> bool:
        return self._pending_cdrs.get(call_id, 0) > 0

    async def _write_cdr(self, ev: Mapping[str, str]) -> None:
        try:
            row = cdrs.from_event(ev)
        except cdrs.CdrParseError as exc:
            self.stats.cdr_errors += 1
            log.error("unreadable Cdr event %s: %s", ev.get("UniqueID", "?"), exc)  # noqa: TRY400 - the message is the whole story
            return
        self._pending_cdrs[row.call_id] = self._pending_cdrs.get(row.call_id, 0) + 1
        try:
            if await self.privacy.subjects.add_cdr(row):
                self.stats.cdrs_written += 1
        finally:
            self._pending_cdrs[row.call_id] -= 1
            if not self._pending_cdrs[row.call_id]:
                del self._pending_cdrs[row.call_id]
        self._notify(row.call_id)

    def _notify(self, call_id: str) -> None:
        for cid, fut in list(self._cdr_waiters):
            if cid == call_id and not fut.done():
                fut.set_result(None)
        self._cdr_waiters = [(c, f) for c, f in self._cdr_waiters if not f.done()]

    async def wait_cdr(
        self, call_id: str, timeout_s: float = 10.0, settle_s: float = 0.5
    ) -> list[dict[str, object]]:
        """Wait until the call is over and its CDRs are written; return them.

        Over means: no live channel, at least one CDR, and `settle_s` without a Hangup or Cdr
        event for it (after a transfer Asterisk emits one CDR per party pair, the last ones
        just after the final Hangup).
        """
        deadline = time.monotonic() + timeout_s
        while True:
            rows = await self.db.cdrs(call_id)
            quiet = time.monotonic() - self._last_activity.get(call_id, 0.0) >= settle_s
            if rows and quiet and not self._live(call_id) and not self._writing(call_id):
                return rows
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TelephonyError(f"no CDR for call {call_id} within {timeout_s}s")
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._cdr_waiters.append((call_id, fut))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(fut, min(remaining, 0.25))

    # ---- reconciliation
    async def _last_cdr_end(self) -> float:
        latest = await self.db.cdrs(limit=1)
        return float(str(latest[0]["end_at"])) if latest else 0.0

    async def reconcile(self, since: float, reason: str = "manual") -> dict[str, int]:
        """Store CDRs from Asterisk's own file that the event stream did not deliver.

        At start the file holds whatever ended while the appliance was down (INFO); after a
        reconnect or in the periodic pass, an addition means events were lost (WARNING).
        """
        path = self.cfg.asterisk.host_path(self.cfg.asterisk.cdr_log)
        added = errors = seen = 0
        rows: list[CdrRow | cdrs.CdrParseError] = await asyncio.to_thread(
            lambda: list(cdrs.read_csv(path, since))
        )
        for item in rows:
            if isinstance(item, cdrs.CdrParseError):
                errors += 1
                log.error("CDR file: %s", item)
                continue
            seen += 1
            if await self.privacy.subjects.add_cdr(item):
                added += 1
                self._notify(item.call_id)
        self.stats.cdrs_reconciled += added
        self.stats.cdr_errors += errors
        result = {"seen": seen, "added": added, "errors": errors}
        self.stats.last_reconcile = result
        if errors or (added and reason != "start"):
            log.warning("reconciled CDRs from %s (%s): %s", path, reason, result)
        elif added:
            log.info("imported CDRs from %s (%s): %s", path, reason, result)
        return result

    async def _refresh_channels(self, lost_at: float | None = None) -> set[str]:
        """Rebuild the live channel model after a (re)connect, when events were missed.

        Calls whose channels are gone are taken (recordings, CDRs); `lost_at` (the outage's
        start) is remembered for them: if Asterisk itself died, no CDR will ever come, and
        `_ingest` writes a flagged one from what was known (see `reconstructed_cdrs`).
        """
        listing = _Listing()
        self._listings.append(listing)
        try:
            items = await self.ami.action_list("CoreShowChannels")
        except AmiError as exc:
            log.warning("could not list channels: %s", exc)
            return set()
        finally:
            self._listings.remove(listing)
        fresh = {}
        for ev in items:
            if ev.get("Event") == "CoreShowChannel":
                ch = Channel.from_event(ev)
                if ch.uniqueid not in listing.hung_up:  # listed, then hung up before the end
                    fresh[ch.uniqueid] = ch
        for uid in listing.created - listing.hung_up:  # born after the snapshot was taken
            if uid not in fresh and uid in self.channels:
                fresh[uid] = self.channels[uid]
        gone = {ch.linkedid for uid, ch in self.channels.items() if uid not in fresh}
        if lost_at is not None:
            for ch in self.channels.values():
                if ch.linkedid in gone:
                    self._vanished.setdefault(ch.linkedid, []).append((ch, lost_at))
        unseen = {uid for uid in self.channels if uid not in fresh}
        self.channels = fresh
        for call_id in gone:
            if not self._live(call_id):
                self._schedule_ingest(call_id)
        return unseen

    async def _audit_channels_periodically(self) -> None:
        while True:
            await asyncio.sleep(CHANNEL_AUDIT_EVERY_S)
            if self.channels and self.ami.connected:
                unseen = await self._refresh_channels()
                if unseen:
                    log.warning("channel audit: %d channel(s) had ended unseen", len(unseen))

    async def _sweep_spool(self) -> None:
        live = {ch.linkedid for ch in self.channels.values()}
        for path in self.recordings.spool_files():
            call_id = path.name.split("-")[1]
            if call_id not in live:
                self._schedule_ingest(call_id)

    # ---- call control
    def _line(self, name: str) -> LineConfig:
        line = self.cfg.line_by_name(name)
        if line is None:
            known = ", ".join(ln.name for ln in self.cfg.lines) or "none"
            raise TelephonyError(f"unknown line {name!r} (configured: {known})")
        return line

    async def originate(
        self, number: str, line: str, timeout_s: int = 30, *, actor: Actor | None = None
    ) -> str:
        """Call `number` and connect it to `line` when answered; returns the call id.

        A number on the do-not-call list is never dialled: DoNotCallError, logged and audited.
        """
        ln = self._line(line)
        await self._check_dnc(number, line, actor or Actor.system("telephony"))
        if number not in {e.number for e in self.cfg.extensions}:
            raise TelephonyError(
                f"{number!r} is not a configured extension, and no SIP trunk is configured "
                "for external numbers"
            )
        call_id = f"{time.time():.6f}"
        await self.ami.action(
            "Originate",
            Channel=f"PJSIP/{number}",
            Context="callvault-lines",
            Exten=ln.extension,
            Priority="1",
            CallerID=f'"{ln.name}" <{ln.extension}>',
            Timeout=str(timeout_s * 1000),
            ChannelId=call_id,
            Variable=f"CV_DIRECTION=outbound,CV_DIALED={number}",
            Async="true",
        )
        return call_id

    async def _check_dnc(self, number: str, line: str, actor: Actor) -> None:
        try:
            ident = self.privacy.subjects.parse(number)
        except IdentifierError as exc:
            raise TelephonyError(f"cannot call: {exc}") from None
        entry = await self.privacy.dnc.find(ident)
        if entry is None:
            await self._check_restricted(ident, number, line, actor)
            return
        log.warning("refused to call %s for line %s: on the do-not-call list", Pii(number), line)
        await self.privacy.audit.record(
            actor, "originate.refused", f"dnc:{entry['id']}", "do-not-call", f"line={line}"
        )
        raise DoNotCallError(
            f"refused to call {Pii(number)}: the number is on the do-not-call list "
            f"(entry {entry['id']}, source {entry['source']!r}, added {_date(entry['added_at'])})"
        )

    async def _check_restricted(
        self, ident: Identifier, number: str, line: str, actor: Actor
    ) -> None:
        # Art. 18 restriction (issue 5): a restricted subject is frozen, so never dialled.
        bi = await self.privacy.keyring.blind_index(ident)
        if await self.privacy.db.restriction_get(bi) is None:
            return
        log.warning("refused to call %s for line %s: processing restricted", Pii(number), line)
        await self.privacy.audit.record(
            actor, "originate.refused", "restriction", "restriction of processing", f"line={line}"
        )
        raise DoNotCallError(f"refused to call {Pii(number)}: processing is restricted (Art. 18)")

    def agent_calls_up(self) -> bool:
        """Whether the voice agent is in a call (its endpoint has a live channel)."""
        prefix = f"PJSIP/{self.cfg.agent.username}-"
        return any(ch.name.startswith(prefix) for ch in self.channels.values())

    def channel_of(self, call_id: str, *, agent: bool) -> Channel:
        prefix = f"PJSIP/{self.cfg.agent.username}-"
        for ch in self.channels.values():
            if ch.linkedid == call_id and ch.name.startswith(prefix) == agent:
                return ch
        side = "agent" if agent else "caller"
        raise TelephonyError(f"call {call_id} has no live {side} channel")

    async def transfer(self, call_id: str, extension: str) -> None:
        """Blind-transfer the caller of an AI call to an extension; the agent leg ends."""
        if extension not in {e.number for e in self.cfg.extensions}:
            raise TelephonyError(f"cannot transfer to {extension!r}: not a configured extension")
        agent = self.channel_of(call_id, agent=True)
        await self.ami.action(
            "BlindTransfer", Channel=agent.name, Context="callvault-extensions", Exten=extension
        )

    async def start_recording(self, call_id: str, line: str) -> None:
        """Record a live call's legs as the line asks (for lines that record on demand)."""
        ln = self._line(line)
        caller = self.channel_of(call_id, agent=False)
        args = mixmonitor_args(self.cfg.asterisk.spool_dir, ln).replace(
            "${CHANNEL(linkedid)}", call_id
        )
        file, _, options = args.partition(",")
        # The AMI action takes options without r()/t() paths inside; pass them as variables.
        await self.ami.action(
            "MixMonitor", Channel=caller.name, File=file, Options=options, Command=""
        )

    async def record_consent(
        self,
        *,
        call_id: str,
        line: str,
        decision: str,
        method: str,
        prompt: str,
        asked_at: float,
        decided_at: float,
    ) -> None:
        """Store a caller's answer to a line's recording-consent question."""
        await self.db.add_consent(
            call_id=call_id,
            line=line,
            decision=decision,
            method=method,
            prompt=prompt,
            asked_at=asked_at,
            decided_at=decided_at,
        )

    async def stop_recording(self, call_id: str) -> None:
        caller = self.channel_of(call_id, agent=False)
        await self.ami.action("StopMixMonitor", Channel=caller.name)
