"""The Alerts page, the nav's open-alert count (fetched by htmx, so every page shows it without
each handler querying it), and acknowledging an alert."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from litestar import MediaType, Request, Response, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template
from markupsafe import escape

from appliance.admin.auth import scope
from appliance.admin.services import Svc
from appliance.admin.users import User
from appliance.ops.alerts import Alerts

UserReq = Request[User, str, Any]


def _when(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


@get("/alerts", guards=[scope("alerts:read")], name="alerts", include_in_schema=False)
async def alerts_page(
    svc: Svc, request: UserReq, ok: FromQuery[str] = "", err: FromQuery[str] = ""
) -> Template:
    alerts = Alerts(svc.db)
    everything = await alerts.list(open_only=False, limit=100)
    return Template(
        "alerts.html",
        context={"user": request.user, "open": [a for a in everything if a.open],
                 "resolved": [a for a in everything if not a.open][:50], "when": _when,
                 "can_write": "alerts:write" in request.user.scopes,
                 "ok": ok[:300], "err": err[:300]},
    )  # fmt: skip


@get("/alerts/badge", guards=[scope("alerts:read")], include_in_schema=False)
async def alerts_badge(svc: Svc) -> Response[str]:
    counts = await svc.db.alert_open_counts()
    n = sum(counts.values())
    worst = "critical" if counts.get("critical") else "warning" if n else ""
    badge = f' <span class="flag alert-{worst}">{n}</span>' if n else ""
    html = (
        '<a href="/alerts" id="nav-alerts" hx-get="/alerts/badge" hx-trigger="every 60s"'
        f' hx-swap="outerHTML">Alerts{badge}</a>'
    )
    return Response(html, media_type=MediaType.HTML)


@post(
    "/alerts/{alert_id:int}/ack", guards=[scope("alerts:write")], status_code=303,
    include_in_schema=False,
)  # fmt: skip
async def alert_ack(alert_id: FromPath[int], svc: Svc, request: UserReq) -> Redirect:
    in_range = 0 < alert_id < 2**63  # SQLite's integer range
    done = in_range and await Alerts(svc.db).ack(alert_id, f"user:{request.user.username}")
    q = {"ok": f"alert {alert_id} acknowledged"} if done else {
        "err": f"alert {escape(str(alert_id))} is not open or already acknowledged"
    }  # fmt: skip
    return Redirect(f"/alerts?{urlencode(q)}", status_code=303)


ROUTES = [alerts_page, alerts_badge, alert_ack]
