"""/api/v1/metrics (Prometheus, token scope metrics:read), /api/v1/alerts, and /readyz.

Prometheus scrapes with `authorization: {credentials: cvt_…}` and
`metrics_path: /api/v1/metrics`; a token made with `--scope metrics:read` can read nothing
else. /readyz is public like /healthz (it carries no personal data: check names and reasons)
so systemd, a load balancer or the admin's monitoring can ask it without a secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import MediaType, Request, Response, Router, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery

from appliance.admin.auth import scope
from appliance.admin.services import Svc
from appliance.admin.tokens import Principal
from appliance.ops import metrics
from appliance.ops.alerts import Alert, Alerts
from appliance.ops.health import Check, readiness

Req = Request[Principal, str, Any]


@get("/metrics", guards=[scope("metrics:read")], media_type=metrics.CONTENT_TYPE)
async def prometheus_metrics(svc: Svc) -> Response[bytes]:
    """The Prometheus text exposition: calls, latencies, queues, disks, rights deadlines,
    retention, backups, alerts (no personal data in any label)."""
    body = await metrics.scrape(svc.cfg, svc.db)
    return Response(body, media_type=metrics.CONTENT_TYPE)


@dataclass
class AlertView:
    id: int
    kind: str
    key: str
    severity: str
    message: str
    first_at: float
    last_at: float
    count: int
    open: bool
    acked_by: str | None
    notify_error: str | None

    @classmethod
    def of(cls, a: Alert) -> AlertView:
        return cls(
            a.id, a.kind, a.key, a.severity, a.message, a.first_at, a.last_at, a.count,
            a.open, a.acked_by, a.notify_error,
        )  # fmt: skip


@get("/alerts", guards=[scope("alerts:read")])
async def list_alerts(svc: Svc, resolved: FromQuery[bool] = False) -> list[AlertView]:
    """Open alerts, newest first (`resolved=true`: resolved ones too)."""
    return [AlertView.of(a) for a in await Alerts(svc.db).list(open_only=not resolved)]


@post(
    "/alerts/{alert_id:int}/ack",
    guards=[scope("alerts:write")],
    status_code=200,
    raises=[NotFoundException],
)
async def ack_alert(alert_id: FromPath[int], svc: Svc, request: Req) -> AlertView:
    """Acknowledge an open alert; it stays listed until its condition clears."""
    if not 0 < alert_id < 2**63:  # SQLite's integer range: anything else names no alert
        raise NotFoundException(f"no open alert {alert_id}")
    alerts = Alerts(svc.db)
    if not await alerts.ack(alert_id, request.user.actor.name):
        row = await svc.db.alert_get(alert_id)
        if row is None or row["resolved_at"] is not None:
            raise NotFoundException(f"no open alert {alert_id}")
    row = await svc.db.alert_get(alert_id)
    assert row is not None
    return AlertView.of(Alert.from_row(row))


@dataclass
class ReadyView:
    ready: bool
    checks: list[Check]
    reasons: list[str]


@get("/readyz", include_in_schema=False)
async def readyz(request: Request[Any, Any, Any]) -> Response[ReadyView]:
    svc = request.app.state.services
    r = await readiness(svc.cfg, svc.db)
    return Response(
        ReadyView(r.ready, r.checks, r.reasons),
        status_code=200 if r.ready else 503,
        media_type=MediaType.JSON,
    )


router = Router(
    path="/api/v1", route_handlers=[prometheus_metrics, list_alerts, ack_alert], tags=["ops"]
)
