"""Campaigns: create, start/pause/resume/stop, status and the report (counts, conversion,
attempts per lead, minutes, outcomes over time, CSV export). Every change is audited."""

from __future__ import annotations

import csv
import io
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from appliance.campaign.model import CONVERTED, CampaignError, Settings
from appliance.privacy.audit import Actor
from appliance.privacy.service import Privacy
from appliance.store import StoreError

# action -> (new state, states it may start from)
TRANSITIONS = {
    "start": ("running", ("draft",)),
    "pause": ("paused", ("running",)),
    "resume": ("running", ("paused",)),
    "stop": ("stopped", ("draft", "running", "paused")),
}


class Campaigns:
    def __init__(self, privacy: Privacy, *, clock: Callable[[], float] = time.time) -> None:
        self.privacy = privacy
        self.db = privacy.db
        self.clock = clock

    async def create(
        self, name: str, *, line: str, list_name: str, settings: Settings, actor: Actor
    ) -> int:
        if not name.strip() or len(name) > 100:
            raise CampaignError("a campaign needs a name (at most 100 characters)")
        ln = self.privacy.cfg.line_by_name(line)
        if ln is None:
            known = ", ".join(x.name for x in self.privacy.cfg.lines) or "none"
            raise CampaignError(f"unknown line {line!r} (configured: {known})")
        if ln.kind not in {"agent", "announcement"}:
            # Agent lines talk with the lead; announcement lines play a recorded message.
            raise CampaignError(
                f"line {line!r} is a {ln.kind} line; campaigns need an agent or announcement line"
            )
        found = await self.db.lead_list(list_name)
        if found is None:
            raise CampaignError(f"no lead list {list_name!r} (import one first)")
        audit = await self.privacy.audit.entry(
            actor, "campaign.create", f"campaign:{name}", ln.purpose, f"line={line}"
        )
        try:
            return await self.db.campaign_add(
                name, line, int(found["id"]), settings.to_json(), self.clock(), actor.name, audit
            )
        except StoreError as exc:
            raise CampaignError(str(exc)) from None

    async def get(self, ref: str) -> dict[str, Any]:
        row = await self.db.campaign(int(ref) if ref.isdigit() else ref)
        if row is None:
            raise CampaignError(f"no campaign {ref!r}")
        return row

    async def act(self, ref: str, action: str, actor: Actor) -> str:
        """start | pause | resume | stop; the new state."""
        if action not in TRANSITIONS:
            raise CampaignError(f"unknown action {action!r} ({', '.join(TRANSITIONS)})")
        camp = await self.get(ref)
        state, allowed = TRANSITIONS[action]
        if action in {"start", "resume"}:
            await self.db.campaign_sync_leads(int(camp["id"]), self.clock())
        audit = await self.privacy.audit.entry(
            actor, f"campaign.{action}", f"campaign:{camp['id']}", "outbound campaign"
        )
        try:
            await self.db.campaign_set_state(int(camp["id"]), state, allowed, self.clock(), audit)
        except StoreError as exc:
            raise CampaignError(str(exc)) from None
        return state

    async def report(self, ref: str, bucket_s: int = 3600) -> dict[str, Any]:
        camp = await self.get(ref)
        cid = int(camp["id"])
        leads = await self.db.campaign_leads(cid)
        attempts = await self.db.attempts(cid)
        dials = [a for a in attempts if a["state"] != "blocked"]
        outcomes = Counter(str(x["outcome"]) for x in leads if x["outcome"])
        reached = sum(1 for x in leads if x["outcome"] not in {"", "blocked"})
        converted = sum(1 for x in leads if x["outcome"] in CONVERTED)
        over_time: dict[str, Counter[str]] = {}
        for a in attempts:
            if a["outcome"] and a["ended_at"] is not None:
                t = float(a["ended_at"]) // bucket_s * bucket_s
                key = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%MZ")
                over_time.setdefault(key, Counter())[str(a["outcome"])] += 1
        return {
            "id": cid,
            "name": camp["name"],
            "line": camp["line"],
            "state": camp["state"],
            "settings": Settings.from_json(str(camp["settings"])).__dict__,
            "leads": len(leads),
            "lead_states": dict(Counter(str(x["state"]) for x in leads)),
            "outcomes": dict(outcomes),
            "dials": len(dials),
            "blocked_attempts": len(attempts) - len(dials),
            "blocked_reasons": dict(
                Counter(str(a["reason"]) for a in attempts if a["state"] == "blocked")
            ),
            "attempts_per_lead": round(len(dials) / len(leads), 3) if leads else 0.0,
            "minutes": round(sum(int(a["billable_s"]) for a in dials) / 60.0, 2),
            "conversion": round(converted / reached, 4) if reached else 0.0,
            "over_time": {k: dict(v) for k, v in sorted(over_time.items())},
        }

    async def report_csv(self, ref: str) -> str:
        """One row per attempt: no personal data (lead ids, times, outcomes)."""
        camp = await self.get(ref)
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(["attempt", "lead", "state", "claimed_at", "ended_at", "disposition",
                    "outcome", "reason", "billable_s"])  # fmt: skip
        for a in await self.db.attempts(int(camp["id"])):
            w.writerow([
                a["id"], a["lead_id"], a["state"], _iso(a["claimed_at"]), _iso(a["ended_at"]),
                a["disposition"], a["outcome"], a["reason"], a["billable_s"],
            ])  # fmt: skip
        return out.getvalue()


def _iso(at: Any) -> str:
    if at is None:
        return ""
    return datetime.fromtimestamp(float(at), UTC).isoformat(timespec="seconds")
