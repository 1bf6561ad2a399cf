"""Campaigns: create, start/pause/resume/stop, status and the report (counts, conversion,
attempts per lead, minutes, outcomes over time, CSV export). Every change is audited.

Who sees what: an operator works on the lines they are assigned (as with calls and
transcripts), so every read and change here takes `lines`, the lines the caller may see (None:
all of them, for the other roles and API tokens). A campaign on another line is "not found"
(its existence is not theirs to know); a lead list is theirs when a campaign on one of their
lines calls it or they imported it.
"""

from __future__ import annotations

import csv
import io
import time
from collections import Counter
from collections.abc import Callable, Collection
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


Lines = Collection[str] | None
"""The lines a caller may see campaigns of; None: every line."""


class CampaignNotFoundError(CampaignError):
    """No such campaign or lead list, or one on a line the caller does not see."""


def sees(lines: Lines, line: str) -> bool:
    return lines is None or line in lines


class Campaigns:
    def __init__(self, privacy: Privacy, *, clock: Callable[[], float] = time.time) -> None:
        self.privacy = privacy
        self.db = privacy.db
        self.clock = clock

    # ---- what a caller sees
    async def visible(self, lines: Lines = None) -> list[dict[str, Any]]:
        """The campaigns on the caller's lines, oldest first."""
        return [c for c in await self.db.campaigns() if sees(lines, str(c["line"]))]

    async def lists(self, lines: Lines = None, actor: Actor | None = None) -> list[dict[str, Any]]:
        """The lead lists the caller may see: all of them (lines None), else those a campaign
        on one of their lines calls and those they imported."""
        rows = await self.db.lead_lists()
        if lines is None:
            return rows
        used: dict[int, set[str]] = {}
        for c in await self.db.campaigns():
            used.setdefault(int(c["list_id"]), set()).add(str(c["line"]))
        mine = actor.name if actor is not None else None
        return [
            r for r in rows
            if r["created_by"] == mine or used.get(int(r["id"]), set()) & set(lines)
        ]  # fmt: skip

    async def lead_list(
        self, name: str, lines: Lines = None, actor: Actor | None = None
    ) -> dict[str, Any]:
        """A lead list the caller may see; CampaignNotFoundError otherwise."""
        for row in await self.lists(lines, actor):
            if row["name"] == name:
                return row
        raise CampaignNotFoundError(f"no lead list {name!r}")

    async def may_import(self, name: str, lines: Lines = None, actor: Actor | None = None) -> None:
        """Importing into `name` creates it, or adds to a list the caller may see; another
        operator's list is refused whole (nothing is imported)."""
        if lines is None or await self.db.lead_list(name) is None:
            return
        await self.lead_list(name, lines, actor)

    async def create(
        self,
        name: str,
        *,
        line: str,
        list_name: str,
        settings: Settings,
        actor: Actor,
        lines: Lines = None,
    ) -> int:
        if not name.strip() or len(name) > 100:
            raise CampaignError("a campaign needs a name (at most 100 characters)")
        ln = self.privacy.cfg.line_by_name(line)
        if ln is None or not sees(lines, line):
            known = ", ".join(x.name for x in self.privacy.cfg.lines if sees(lines, x.name))
            raise CampaignError(f"unknown line {line!r} (yours: {known or 'none'})")
        if ln.kind not in {"agent", "announcement"}:
            # Agent lines talk with the lead; announcement lines play a recorded message.
            raise CampaignError(
                f"line {line!r} is a {ln.kind} line; campaigns need an agent or announcement line"
            )
        found = await self.db.lead_list(list_name)
        if found is None:
            raise CampaignError(f"no lead list {list_name!r} (import one first)")
        await self.lead_list(list_name, lines, actor)
        audit = await self.privacy.audit.entry(
            actor, "campaign.create", f"campaign:{name}", ln.purpose, f"line={line}"
        )
        try:
            return await self.db.campaign_add(
                name, line, int(found["id"]), settings.to_json(), self.clock(), actor.name, audit
            )
        except StoreError as exc:
            raise CampaignError(str(exc)) from None

    async def get(self, ref: str, lines: Lines = None) -> dict[str, Any]:
        row = await self.db.campaign(int(ref) if ref.isdigit() else ref)
        if row is None or not sees(lines, str(row["line"])):
            raise CampaignNotFoundError(f"no campaign {ref!r}")
        return row

    async def act(self, ref: str, action: str, actor: Actor, lines: Lines = None) -> str:
        """start | pause | resume | stop; the new state."""
        camp = await self.get(ref, lines)
        if action not in TRANSITIONS:
            raise CampaignError(f"unknown action {action!r} ({', '.join(TRANSITIONS)})")
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

    async def report(self, ref: str, bucket_s: int = 3600, lines: Lines = None) -> dict[str, Any]:
        camp = await self.get(ref, lines)
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

    async def report_csv(self, ref: str, lines: Lines = None) -> str:
        """One row per attempt: no personal data (lead ids, times, outcomes)."""
        camp = await self.get(ref, lines)
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
