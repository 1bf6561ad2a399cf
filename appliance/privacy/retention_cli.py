"""`callvault privacy retention show|dry-run|run`, and `callvault retention run` (the command
systemd/callvault-retention.service runs from its timer). Registered by appliance.privacy.cli
and appliance.cli; the engine is appliance.privacy.retention.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from appliance.privacy import Actor, Privacy
    from appliance.privacy.retention import Counts, Plan, PlanItem, Retention

Handler = Callable[[argparse.Namespace, "Privacy", Console], Awaitable[int]]
Wrap = Callable[[Handler], Callable[[argparse.Namespace], int]]
TIMER_ACTOR = "retention-timer"


def _retention(privacy: Privacy, actor: Actor) -> Retention:
    from appliance.privacy.retention import Retention

    return Retention.of(privacy, actor=actor)


def _operator() -> Actor:
    from appliance.privacy.cli import operator

    return operator()


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _action(item: PlanItem) -> str:
    return f"hold #{item.hold}" if item.action == "hold" else item.action


def _totals(title: str, counts: Mapping[str, Counts]) -> Table:
    table = Table(title=title)
    for col in ("category", "deleted", "anonymised", "held"):
        table.add_column(col, justify="left" if col == "category" else "right")
    for name, c in counts.items():
        table.add_row(name, str(c.deleted), str(c.anonymised), str(c.held))
    table.add_row(
        "total",
        str(sum(c.deleted for c in counts.values())),
        str(sum(c.anonymised for c in counts.values())),
        str(sum(c.held for c in counts.values())),
        style="bold",
    )
    return table


def _item_json(item: PlanItem) -> dict[str, Any]:
    d = asdict(item)
    d["subjects"] = list(item.subjects)
    return d


async def show(args: argparse.Namespace, privacy: Privacy, console: Console) -> int:
    r = _retention(privacy, _operator())
    p = r.policies
    runs = await r.runs(args.runs)
    if args.json:
        out = {
            "purge_interval_h": p.interval_h,
            "categories": {
                c.name: {
                    "covers": c.covers,
                    "at_expiry": c.at_expiry,
                    "days": p.describe(c.name),
                }
                for c in r.categories
            },
            "not_stored_yet": list(r.unplanned),
            "runs": runs,
        }
        print(json.dumps(out, indent=2))
        return 0
    table = Table(title=f"Retention policy (purge every {p.interval_h} h)")
    for col in ("category", "covers", "days", "per line", "at expiry"):
        table.add_column(col)
    for c in r.categories:
        d = p.describe(c.name)
        lines = d["lines"]
        per_line = (
            ", ".join(f"{k}: {v}" for k, v in lines.items()) if isinstance(lines, dict) else ""
        )
        table.add_row(c.name, c.covers, str(d["default"]), per_line or "-", c.at_expiry)
    console.print(table)
    if r.unplanned:
        console.print(f"configured but not stored yet (nothing to purge): {', '.join(r.unplanned)}")
    if runs:
        hist = Table(title="Last runs")
        for col in ("run", "at", "kind", "status", "deleted", "anonymised", "held", "error"):
            hist.add_column(col)
        for run in runs:
            counts = run["counts"] if isinstance(run["counts"], dict) else {}
            total = {k: sum(int(c.get(k, 0)) for c in counts.values()) for k in ("deleted",
                     "anonymised", "held")}  # fmt: skip
            hist.add_row(
                str(run["id"]),
                _when(float(str(run["started_at"]))),
                "dry run" if run["dry_run"] else "purge",
                str(run["status"]),
                str(total["deleted"]),
                str(total["anonymised"]),
                str(total["held"]),
                str(run["error"]) or "-",
            )
        console.print(hist)
    return 0


def _print_plan(plan: Plan, console: Console, limit: int) -> None:
    shown = plan.items if limit <= 0 else plan.items[:limit]
    table = Table(title=f"Retention dry run at {_when(plan.now)}: {len(plan.items)} items")
    for col in ("category", "id", "line", "age (days)", "policy (days)", "action"):
        table.add_column(col, justify="right" if "days" in col else "left")
    for i in shown:
        table.add_row(
            i.category,
            str(i.key),
            i.line or "-",
            f"{i.age_days:.1f}",
            str(i.policy_days),
            _action(i),
        )
    console.print(table)
    if len(shown) < len(plan.items):
        console.print(f"… {len(plan.items) - len(shown)} more items (--limit 0 lists all)")
    console.print(_totals("Totals", plan.counts()))


async def dry_run(args: argparse.Namespace, privacy: Privacy, console: Console) -> int:
    plan = await _retention(privacy, _operator()).dry_run()
    if args.json:
        out = {
            "now": plan.now,
            "items": [_item_json(i) for i in plan.items],
            "totals": {c: n.as_dict() for c, n in plan.counts().items()},
        }
        print(json.dumps(out, indent=2))
        return 0
    _print_plan(plan, console, args.limit)
    return 0


async def _purge(args: argparse.Namespace, privacy: Privacy, console: Console, actor: Actor) -> int:
    result = await _retention(privacy, actor).run()
    if args.json:
        out = {
            "run": result.run_id,
            "now": result.now,
            "counts": {c: n.as_dict() for c, n in result.counts.items()},
            "files_removed": result.files_removed,
        }
        print(json.dumps(out, indent=2))
        return 0
    console.print(_totals(f"Retention run {result.run_id} at {_when(result.now)}", result.counts))
    console.print(f"{result.files_removed} encrypted files removed")
    return 0


async def run(args: argparse.Namespace, privacy: Privacy, console: Console) -> int:
    return await _purge(args, privacy, console, _operator())


async def timer_run(args: argparse.Namespace, privacy: Privacy, console: Console) -> int:
    from appliance.privacy import Actor

    return await _purge(args, privacy, console, Actor.system(TIMER_ACTOR))


def add_parsers(psub: Any, wrap: Wrap) -> None:
    """`privacy retention …` on the privacy command's subparsers."""
    ret = psub.add_parser("retention", help="retention policy, dry run and purge").add_subparsers(
        dest="retention_cmd", required=True
    )
    sh = ret.add_parser("show", help="the policy per category and line, and the last runs")
    sh.add_argument("--json", action="store_true")
    sh.add_argument("--runs", type=int, default=5, help="how many past runs to list")
    sh.set_defaults(fn=wrap(show))
    dry = ret.add_parser(
        "dry-run", help="list every item a purge now would delete, anonymise or keep (held)"
    )
    dry.add_argument("--json", action="store_true")
    dry.add_argument("--limit", type=int, default=0, help="list at most N items (0: all)")
    dry.set_defaults(fn=wrap(dry_run))
    go = ret.add_parser("run", help="purge what the policy expires now (holds kept); audited")
    go.add_argument("--json", action="store_true")
    go.set_defaults(fn=wrap(run))


def add_timer_parser(sub: Any, console: Console) -> None:
    """`callvault retention run`: the purge as the systemd timer starts it."""
    from appliance.privacy.cli import with_privacy as _run

    ret = sub.add_parser(
        "retention", help="retention purge (run by callvault-retention.timer)"
    ).add_subparsers(dest="retention_cmd", required=True)
    go = ret.add_parser("run", help="same as `privacy retention run`, audited as the timer")
    go.add_argument("--json", action="store_true")
    go.set_defaults(fn=_run(timer_run, console))
