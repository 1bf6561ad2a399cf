"""Retention as the admin pages and API show it: the policy in force per category and line,
dry runs, the preview of a proposed change, and the purge run from a previewed plan.

Why a proposed change is previewed here but saved in the config file: the policy lives in the
appliance's one TOML config (`[privacy.retention.days]`, `[[lines]] retention_days`), which
the retention timer, the records of processing and the telephony service all read. The admin
listener runs unprivileged with the config read-only (systemd `ProtectSystem=strict`), and a
second, web-written source of truth would let the timer and the records of processing
disagree with what the page says. So the page computes what the proposed figures would purge
(a dry run under the proposed policy, at the same instant as one under the current policy),
and gives the exact TOML lines to put in the config file; the next purge run (a new process)
and, after a restart, these pages follow the file.

A purge runs the plan of a dry run the user saw: `run(at)` with the dry run's instant executes
exactly the plan a dry run at that instant shows (appliance.privacy.retention), less anything
a legal hold placed since keeps. A preview older than `PREVIEW_TTL_S` must be redone.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from appliance.config import RETENTION_CATEGORIES, Config
from appliance.errors import CallvaultError
from appliance.privacy import Actor, Privacy
from appliance.privacy.retention import (
    FLOORS,
    NOT_PER_LINE,
    Counts,
    Plan,
    Policies,
    Retention,
    RetentionError,
    RunResult,
)

log = logging.getLogger(__name__)
PREVIEW_TTL_S = 15 * 60
# A browser clock or a proxy a little behind: a preview "from the future" by this much is fine.
_SKEW_S = 5.0
UPCOMING_CACHE_S = 600.0
UPCOMING_WAIT_S = 1.0


@dataclass(frozen=True)
class CategoryPolicy:
    name: str
    covers: str
    at_expiry: str
    days: int
    """The default period in force (floors applied)."""
    configured: int
    """The figure in `[privacy.retention.days]`."""
    per_line: bool
    lines: dict[str, int]
    """Lines whose period differs from the default: line -> days in force."""


@dataclass(frozen=True)
class LinePolicy:
    line: str
    days: dict[str, int]
    """Category -> days in force on this line."""
    source: dict[str, str]
    """Category -> `line` (its own figure), `default`, or `floor` (raised, see FLOORS)."""


@dataclass(frozen=True)
class PolicyView:
    interval_h: int
    categories: list[CategoryPolicy]
    lines: list[LinePolicy]
    not_stored_yet: list[str]
    floors: dict[str, list[str]]
    config_source: str


def view(cfg: Config, retention: Retention) -> PolicyView:
    p = retention.policies
    cats = []
    for c in retention.categories:
        described = p.describe(c.name)
        lines = described["lines"]
        cats.append(
            CategoryPolicy(
                name=c.name,
                covers=c.covers,
                at_expiry=c.at_expiry,
                days=p.days(c.name, None),
                configured=p.configured(c.name, None),
                per_line=c.name not in NOT_PER_LINE,
                lines=dict(lines) if isinstance(lines, dict) else {},
            )
        )
    per_line = []
    for line in cfg.lines:
        days, source = {}, {}
        for c in retention.categories:
            if c.name in NOT_PER_LINE:
                continue
            days[c.name] = p.days(c.name, line.name)
            own = c.name in line.retention_days
            if days[c.name] > p.configured(c.name, line.name):
                source[c.name] = "floor"
            else:
                source[c.name] = "line" if own else "default"
        per_line.append(LinePolicy(line.name, days, source))
    return PolicyView(
        interval_h=p.interval_h,
        categories=cats,
        lines=per_line,
        not_stored_yet=list(retention.unplanned),
        floors={k: list(v) for k, v in FLOORS.items()},
        config_source=str(cfg.source) if cfg.source else "the config file",
    )


# ---- dry runs and their counts
def totals(counts: Mapping[str, Counts]) -> dict[str, int]:
    return {
        "deleted": sum(c.deleted for c in counts.values()),
        "anonymised": sum(c.anonymised for c in counts.values()),
        "held": sum(c.held for c in counts.values()),
    }


def by_line(plan: Plan) -> dict[str, dict[str, dict[str, int]]]:
    """line ("-": not per line) -> category -> counts; only what a run acts on or holds."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for item in plan.items:
        cell = out.setdefault(item.line or "-", {}).setdefault(
            item.category, {"deleted": 0, "anonymised": 0, "held": 0}
        )
        key = {"delete": "deleted", "anonymise": "anonymised", "hold": "held"}[item.action]
        cell[key] += 1
    return dict(sorted(out.items()))


@dataclass(frozen=True)
class DryRun:
    now: float
    counts: dict[str, dict[str, int]]
    """Category -> {deleted, anonymised, held}."""
    totals: dict[str, int]
    lines: dict[str, dict[str, dict[str, int]]]

    @classmethod
    def of(cls, plan: Plan) -> DryRun:
        counts = plan.counts()
        return cls(
            now=plan.now,
            counts={c: n.as_dict() for c, n in counts.items()},
            totals=totals(counts),
            lines=by_line(plan),
        )

    @property
    def acting(self) -> int:
        return self.totals["deleted"] + self.totals["anonymised"]


async def dry_run(privacy: Privacy, actor: Actor) -> DryRun:
    """A dry run now, recorded in `retention_runs` like `privacy retention dry-run`."""
    return DryRun.of(await Retention.of(privacy, actor=actor).dry_run())


# ---- a proposed change
def proposed_config(cfg: Config, line: str, days: Mapping[str, int]) -> Config:
    """`cfg` with `days` replacing the default figures (`line` empty) or that line's own;
    RetentionError naming the figure when the result is not a valid policy."""
    for cat in days:
        if cat not in RETENTION_CATEGORIES:
            raise RetentionError(f"unknown data category {cat!r}")
    if not line:
        retention = replace(cfg.privacy.retention, days={**cfg.privacy.retention.days, **days})
        new = replace(cfg, privacy=replace(cfg.privacy, retention=retention))
    else:
        target = cfg.line_by_name(line)
        if target is None:
            raise RetentionError(f"no line named {line!r}")
        lines = tuple(
            replace(ln, retention_days={**ln.retention_days, **days}) if ln.name == line else ln
            for ln in cfg.lines
        )
        new = replace(cfg, lines=lines)
    Policies.from_config(new)  # validates: names the offending figure
    return new


def changed(cfg: Config, line: str, days: Mapping[str, int]) -> dict[str, int]:
    """Only the figures that differ from what the config says now."""
    if not line:
        now = dict(cfg.privacy.retention.days)
    else:
        if cfg.line_by_name(line) is None:
            raise RetentionError(f"no line named {line!r}")
        # Against what the line has now (its own figure or the default it inherits): a form
        # filled in with the line's figures changes only the ones the user edited.
        policies = Policies.from_config(cfg)
        now = {c: policies.configured(c, line) for c in RETENTION_CATEGORIES}
    return {c: d for c, d in days.items() if now.get(c) != d}


def toml_snippet(cfg: Config, line: str, days: Mapping[str, int]) -> str:
    """The lines to write into the config file for this change."""
    if not days:
        return ""
    if not line:
        body = "\n".join(f"{c} = {d}" for c, d in days.items())
        return f"[privacy.retention.days]\n{body}\n"
    target = cfg.line_by_name(line)
    merged = {**(target.retention_days if target else {}), **days}
    inline = ", ".join(f"{c} = {d}" for c, d in merged.items())
    return (
        f'[[lines]]\nname = "{line}"\n'
        "# … the line's other keys stay as they are …\n"
        f"retention_days = {{ {inline} }}\n"
    )


@dataclass(frozen=True)
class Preview:
    line: str
    """Empty: the default policy; else the line whose own figures change."""
    days: dict[str, int]
    """The proposed figures that differ from the config."""
    current: DryRun
    proposed: DryRun
    snippet: str
    config_source: str

    @property
    def delta(self) -> dict[str, dict[str, int]]:
        return {
            c: {
                k: self.proposed.counts[c][k] - self.current.counts[c][k]
                for k in ("deleted", "anonymised", "held")
            }
            for c in self.current.counts
        }


async def preview(privacy: Privacy, actor: Actor, line: str, days: Mapping[str, int]) -> Preview:
    """Plans under the current and the proposed policy at one instant; changes nothing."""
    cfg = privacy.cfg
    diff = changed(cfg, line, days)
    new_cfg = proposed_config(cfg, line, diff)
    now = time.time()
    current = await Retention.of(privacy, actor=actor).plan(now)
    proposed = await Retention(new_cfg, privacy.db, privacy.audit, actor=actor).plan(now)
    return Preview(
        line=line,
        days=diff,
        current=DryRun.of(current),
        proposed=DryRun.of(proposed),
        snippet=toml_snippet(cfg, line, diff),
        config_source=str(cfg.source) if cfg.source else "the config file",
    )


def parse_days(fields: Mapping[str, str], prefix: str = "days_") -> dict[str, int]:
    """Form fields `days_<category>` -> {category: days}; blank fields are left out."""
    out = {}
    for cat in RETENTION_CATEGORIES:
        raw = fields.get(prefix + cat, "").strip()
        if not raw:
            continue
        if not raw.isdigit():
            raise RetentionError(f"{cat}: {raw!r} is not a whole number of days")
        out[cat] = int(raw)
    return out


# ---- the purge
def check_preview(at: float, now: float | None = None) -> None:
    now = time.time() if now is None else now
    if not math.isfinite(at):
        raise RetentionError("the dry run's time is not a time: run a new dry run")
    if at > now + _SKEW_S:
        raise RetentionError("the dry run's time is in the future: run a new dry run")
    if now - at > PREVIEW_TTL_S:
        raise RetentionError(
            f"the dry run is {int((now - at) // 60)} minutes old: run a new one and check it "
            "before purging"
        )


async def run(privacy: Privacy, actor: Actor, at: float) -> RunResult:
    """Purge exactly what the dry run at `at` listed (holds placed since still win)."""
    check_preview(at)
    return await Retention.of(privacy, actor=actor).run(at)


def run_summary(result: RunResult) -> dict[str, Any]:
    return {
        "run": result.run_id,
        "now": result.now,
        "counts": {c: n.as_dict() for c, n in result.counts.items()},
        "totals": totals(result.counts),
        "files_removed": result.files_removed,
    }


# ---- the dashboard's "upcoming purges"
@dataclass
class _Forecast:
    at: float = 0.0
    result: DryRun | None = None
    error: str = ""
    task: asyncio.Task[None] | None = None


_forecasts: dict[str, _Forecast] = {}


async def _refresh(privacy: Privacy, f: _Forecast) -> None:
    now = time.time()
    try:
        retention = Retention.of(privacy)
        plan = await retention.plan(now + retention.policies.interval_h * 3600)
    except CallvaultError as exc:  # a policy the engine refuses: the page says which
        f.error = str(exc)
    except Exception:  # e.g. the store closing under it at shutdown: no forecast, say so
        log.exception("retention forecast failed")
        f.error = "the retention forecast failed (see the admin log)"
    else:
        f.at, f.result, f.error = now, DryRun.of(plan), ""


async def upcoming(privacy: Privacy, *, wait_s: float = UPCOMING_WAIT_S) -> DryRun | None:
    """What the next purge run will act on: a plan at now + the purge interval (not recorded).

    On a large store a plan takes seconds (4 s at 1 M calls), so it is computed in the
    background and kept for a few minutes: a page waits at most `wait_s` for a fresh one and
    otherwise shows the last (or None: "being computed"). RetentionError (a bad policy) is
    raised to the page.
    """
    key = str(privacy.cfg.database)
    f = _forecasts.setdefault(key, _Forecast())
    stale = time.time() - f.at >= UPCOMING_CACHE_S
    if stale and (f.task is None or f.task.done()):
        f.task = asyncio.create_task(_refresh(privacy, f), name="retention-forecast")
    if f.task is not None and not f.task.done():
        await asyncio.wait({f.task}, timeout=wait_s)
    if f.error:
        raise RetentionError(f.error)
    return f.result


def forget_upcoming(privacy: Privacy) -> None:
    """After a purge the forecast is stale: the next page computes it again."""
    f = _forecasts.get(str(privacy.cfg.database))
    if f is not None:
        f.at = 0.0
