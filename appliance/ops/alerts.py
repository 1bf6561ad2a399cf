"""Alerts that need no cloud: kept in the database (the admin UI's Alerts page reads them),
written to the journal, and sent through the customer's SMTP relay and/or a LAN webhook.

Any part of the appliance raises one with `await alerts.fire(kind, message, key=...)` and
clears it with `await alerts.resolve(kind, key)`. One alert stays open per (kind, key): firing
again bumps its count and time and sends nothing new unless the severity rose; resolving sends
one "resolved" notice. Messages must carry no personal data — ids, line names, paths and
figures only — because they go into e-mails and the journal.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import re
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from appliance.config import OpsConfig
from appliance.ops.notify import Notifier, NotifyError

Severity = Literal["critical", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("critical", "warning", "info")
_RANK = {"info": 0, "warning": 1, "critical": 2}

# The kinds the appliance raises, with their default severity. Other kinds are accepted (a
# new check needs no edit here) as long as they are well formed.
KINDS: Mapping[str, Severity] = {
    "trunk_down": "critical",
    "ami_down": "critical",
    "disk_filling": "warning",
    "recording_refused": "critical",
    "model_failing": "critical",
    "rights_deadline": "warning",
    "retention_failed": "critical",
    "backup_failed": "critical",
    "backup_unverified": "warning",
    "cert_expiring": "warning",
}
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
_KEY_MAX = 200

log = logging.getLogger("callvault.alerts")


class AlertStore(Protocol):
    async def alert_fire(
        self, *, kind: str, key: str, severity: str, message: str, at: float
    ) -> tuple[dict[str, Any], bool]: ...
    async def alert_resolve(self, *, kind: str, key: str, at: float) -> dict[str, Any] | None: ...
    async def alerts_list(
        self, *, open_only: bool = True, limit: int = 200
    ) -> list[dict[str, Any]]: ...
    async def alert_ack(self, alert_id: int, *, at: float, by: str) -> bool: ...
    async def alert_notified(self, alert_id: int, *, at: float, error: str | None) -> None: ...


@dataclass(frozen=True)
class Alert:
    id: int
    kind: str
    key: str
    severity: Severity
    message: str
    first_at: float
    last_at: float
    count: int
    resolved_at: float | None
    acked_at: float | None
    acked_by: str | None
    notified_at: float | None
    notify_error: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Alert:
        return cls(**{k: row[k] for k in cls.__dataclass_fields__})

    @property
    def open(self) -> bool:
        return self.resolved_at is None


class Alerts:
    """The one way to raise and clear alerts. Safe to share between tasks; each process
    (serve, the admin listener, the timers' commands) makes its own over the same database."""

    def __init__(
        self,
        store: AlertStore,
        notifiers: Sequence[Notifier] = (),
        *,
        clock: Callable[[], float] = time.time,
        hostname: str | None = None,
    ) -> None:
        self.store = store
        self.notifiers = tuple(notifiers)
        self.clock = clock
        self.hostname = hostname or socket.gethostname()
        self._sending: set[asyncio.Task[None]] = set()
        # One delivery at a time, in the order raised: "resolved" never overtakes its alert.
        self._send_lock = asyncio.Lock()

    async def fire(
        self,
        kind: str,
        message: str,
        *,
        key: str | None = None,
        severity: Severity | None = None,
    ) -> Alert:
        """Open (or bump) the alert for (kind, key); logs it and, when it is new or got worse,
        sends it in the background (`drain()` waits for the sending)."""
        kind, key_s = _check(kind, key)
        sev: Severity = severity or KINDS.get(kind, "warning")
        if sev not in _RANK:
            raise ValueError(f"alert severity {sev!r}: expected one of {', '.join(SEVERITIES)}")
        if not message.strip():
            raise ValueError(f"alert {kind}: empty message")
        before = None
        if self.notifiers:
            before = next((a for a in await self.list() if a.kind == kind and a.key == key_s), None)
        row, new = await self.store.alert_fire(
            kind=kind, key=key_s, severity=sev, message=message, at=self.clock()
        )
        alert = Alert.from_row(row)
        worse = before is not None and _RANK[sev] > _RANK[before.severity]
        if new or worse:
            log.log(
                logging.CRITICAL if sev == "critical" else logging.WARNING,
                "alert %s%s: %s",
                kind,
                f" [{key_s}]" if key_s else "",
                message,
                extra={"alert_id": alert.id, "alert_kind": kind, "alert_severity": sev},
            )
            self._notify(alert)
        return alert

    async def resolve(self, kind: str, key: str | None = None) -> Alert | None:
        """Close the open alert for (kind, key); None when none was open (nothing sent)."""
        kind, key_s = _check(kind, key)
        row = await self.store.alert_resolve(kind=kind, key=key_s, at=self.clock())
        if row is None:
            return None
        alert = Alert.from_row(row)
        log.info(
            "alert %s%s resolved",
            kind,
            f" [{key_s}]" if key_s else "",
            extra={"alert_id": alert.id, "alert_kind": kind},
        )
        self._notify(alert)
        return alert

    async def set(
        self,
        kind: str,
        active: bool,
        message: str,
        *,
        key: str | None = None,
        severity: Severity | None = None,
    ) -> Alert | None:
        """fire() when `active`, else resolve(): what a periodic check calls every round."""
        if active:
            return await self.fire(kind, message, key=key, severity=severity)
        return await self.resolve(kind, key)

    async def list(self, open_only: bool = True, limit: int = 200) -> builtins.list[Alert]:
        return [
            Alert.from_row(r)
            for r in await self.store.alerts_list(open_only=open_only, limit=limit)
        ]

    async def ack(self, alert_id: int, by: str) -> bool:
        """Acknowledge an open alert (it stays open until its condition clears)."""
        done = await self.store.alert_ack(alert_id, at=self.clock(), by=by)
        if done:
            log.info("alert %d acknowledged by %s", alert_id, by, extra={"alert_id": alert_id})
        return done

    async def drain(self) -> None:
        """Wait for notifications still being sent (tests, shutdown)."""
        while self._sending:
            await asyncio.gather(*list(self._sending), return_exceptions=True)

    def _notify(self, alert: Alert) -> None:
        if not self.notifiers:
            return
        task = asyncio.get_running_loop().create_task(self._send(alert))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, alert: Alert) -> None:
        async with self._send_lock:
            await self._deliver(alert)

    async def _deliver(self, alert: Alert) -> None:
        errors = []
        payload = {k: getattr(alert, k) for k in Alert.__dataclass_fields__}
        for notifier in self.notifiers:
            try:
                await notifier.send(payload, hostname=self.hostname)
            except NotifyError as exc:
                errors.append(str(exc))
                log.error(  # noqa: TRY400 - the reason is the message; no traceback
                    "alert %d not sent: %s", alert.id, exc, extra={"alert_id": alert.id}
                )
        try:
            await self.store.alert_notified(
                alert.id, at=self.clock(), error="; ".join(errors) or None
            )
        except Exception:  # the store closing under a late send must not kill the loop
            log.exception("alert %d: could not record the notification", alert.id)


def _check(kind: str, key: str | None) -> tuple[str, str]:
    if not _KIND.match(kind):
        raise ValueError(f"alert kind {kind!r}: expected lower_snake_case, at most 48 chars")
    key_s = key or ""
    if len(key_s) > _KEY_MAX:
        raise ValueError(f"alert {kind}: key longer than {_KEY_MAX} chars")
    return kind, key_s


def alerts_from_config(store: AlertStore, ops: OpsConfig) -> Alerts:
    """The Alerts a process of the box uses: the store plus the notifiers `[ops]` configures."""
    from appliance.ops.notify import notifiers_from_config

    return Alerts(store, notifiers_from_config(ops))
