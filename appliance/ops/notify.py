"""Alert delivery off the admin UI: the customer's SMTP relay and a webhook on the LAN.

Both are optional and both stay on the premises: the relay is the customer's own and the
webhook's address is a LAN IP literal (appliance.config checks it). A sender that fails raises
NotifyError; the caller records the error on the alert and the alert still shows in the UI and
the journal, so a dead relay never hides a problem.
"""

from __future__ import annotations

import asyncio
import json
import smtplib
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Protocol

from appliance.config import OpsConfig
from appliance.errors import CallvaultError

_TIMEOUT_S = 10.0


class NotifyError(CallvaultError):
    pass


class Notifier(Protocol):
    @property
    def name(self) -> str: ...

    async def send(self, alert: Mapping[str, Any], *, hostname: str) -> None: ...


def alert_subject(alert: Mapping[str, Any], hostname: str) -> str:
    state = "resolved" if alert.get("resolved_at") else str(alert["severity"]).upper()
    return f"[callvault {hostname}] {state}: {alert['kind']} {alert['key'] or ''}".rstrip()


def alert_payload(alert: Mapping[str, Any], hostname: str) -> dict[str, Any]:
    keys = ("id", "kind", "key", "severity", "message", "first_at", "last_at", "count")
    out = {k: alert.get(k) for k in keys}
    out["resolved"] = bool(alert.get("resolved_at"))
    out["host"] = hostname
    return out


@dataclass(frozen=True)
class SmtpNotifier:
    host: str
    port: int
    sender: str
    to: tuple[str, ...]
    starttls: bool = False
    name: str = "smtp"

    async def send(self, alert: Mapping[str, Any], *, hostname: str) -> None:
        msg = EmailMessage()
        msg["Subject"] = alert_subject(alert, hostname)
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = make_msgid(domain="callvault.invalid")
        body = alert_payload(alert, hostname)
        msg.set_content(
            f"{alert['message']}\n\n"
            + "\n".join(f"{k}: {v}" for k, v in body.items() if k != "message")
            + "\n\nOpen the admin UI's Alerts page to acknowledge it.\n"
        )
        # smtplib blocks; a thread keeps the event loop (and calls) running meanwhile.
        await asyncio.to_thread(self._send_blocking, msg)

    def _send_blocking(self, msg: EmailMessage) -> None:
        try:
            with smtplib.SMTP(self.host, self.port, timeout=_TIMEOUT_S) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                smtp.send_message(msg)
        except (OSError, smtplib.SMTPException) as exc:
            raise NotifyError(f"SMTP relay {self.host}:{self.port}: {exc}") from exc


@dataclass(frozen=True)
class WebhookNotifier:
    url: str
    name: str = "webhook"

    async def send(self, alert: Mapping[str, Any], *, hostname: str) -> None:
        data = json.dumps(alert_payload(alert, hostname)).encode()
        await asyncio.to_thread(self._post_blocking, data)

    def _post_blocking(self, data: bytes) -> None:
        req = urllib.request.Request(  # noqa: S310 - the scheme is checked in appliance.config
            self.url, data=data, method="POST", headers={"Content-Type": "application/json"}
        )
        # No proxies from the environment: the webhook is on the LAN by construction.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=_TIMEOUT_S) as resp:
                status = int(resp.status)
        except urllib.error.HTTPError as exc:
            raise NotifyError(f"webhook {self.url}: HTTP {exc.code}") from exc
        except (OSError, urllib.error.URLError) as exc:
            raise NotifyError(f"webhook {self.url}: {exc}") from exc
        if not 200 <= status < 300:
            raise NotifyError(f"webhook {self.url}: HTTP {status}")


def notifiers_from_config(cfg: OpsConfig) -> Sequence[Notifier]:
    out: list[Notifier] = []
    if cfg.smtp_host:
        out.append(
            SmtpNotifier(
                host=cfg.smtp_host,
                port=cfg.smtp_port,
                sender=cfg.smtp_from,
                to=cfg.smtp_to,
                starttls=cfg.smtp_starttls,
            )
        )
    if cfg.webhook_url:
        out.append(WebhookNotifier(cfg.webhook_url))
    return out
