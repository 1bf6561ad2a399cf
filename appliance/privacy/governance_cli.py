"""`callvault privacy review …`, `… breach …` and `… ropa` (registered by privacy.cli).

The operator is the OS user (`cli:<user>`) as everywhere in `callvault privacy`; a review
decision carries the role it was made under (`--role`, default reviewer).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from appliance import config as config_mod
from appliance.errors import CallvaultError

if TYPE_CHECKING:
    from appliance.privacy import Actor, Privacy
    from appliance.privacy.breach import Breach
    from appliance.privacy.review import ReviewItem

Wrap = Callable[[Any], Callable[[argparse.Namespace], int]]


def _actor(role: str | None = None) -> Actor:
    from appliance.privacy import Actor
    from appliance.privacy.cli import operator

    op = operator()
    return op if role is None else Actor(name=op.name, role=role)


def _stamp(ts: float | None) -> str:
    return "—" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def parse_time(value: str | None, what: str) -> float | None:
    """`2024-05-01 10:00`, `2024-05-01T10:00+02:00`, `now`; no zone: this box's local time."""
    if value is None:
        return None
    if value.strip().lower() == "now":
        return time.time()
    try:
        return datetime.fromisoformat(value.strip()).timestamp()
    except ValueError:
        raise CallvaultError(
            f"{what} {value!r} is not a date and time (e.g. 2024-05-01 14:30 or "
            "2024-05-01T14:30+02:00)"
        ) from None


# ---- review queue
def _review_row(item: ReviewItem) -> dict[str, Any]:
    return dict(item.__dict__)


async def review_list(args: argparse.Namespace, privacy: Privacy, console: Console) -> int:
    status = None if args.status == "all" else args.status
    items = await privacy.review.items(status)
    if args.json:
        print(json.dumps([_review_row(i) for i in items], indent=2))
        return 0
    table = Table(title=f"Review queue ({args.status}): {len(items)} items")
    for col in ("id", "kind", "ref", "reason", "flagged", "by", "outcome", "decided", "reviewer"):
        table.add_column(col)
    for i in items:
        table.add_row(
            str(i.id),
            i.kind,
            i.ref,
            i.reason,
            _stamp(i.flagged_at),
            i.flagged_by,
            i.outcome or "open",
            _stamp(i.decided_at),
            "" if i.decided_by is None else f"{i.decided_by} ({i.decided_role})",
        )
    console.print(table)
    return 0


async def review_decide(args: argparse.Namespace, privacy: Privacy, console: Console) -> int:
    item = await privacy.review.decide(args.id, _actor(args.role), args.outcome, args.note)
    console.print(
        f"review item #{item.id} ({item.kind} {item.ref}) {item.outcome} by {item.decided_by} "
        f"as {item.decided_role} at {_stamp(item.decided_at)}"
    )
    return 0


# ---- breach register
def _clock_text(b: Breach, now: float) -> str:
    d = b.deadline(now)
    if b.authority_decision == "not-required":
        return "not required"
    if b.authority_decision == "notified":
        return f"notified {_stamp(b.authority_at)}" + (" (late)" if d.late else "")
    assert d.hours_left is not None
    if d.overdue:
        return f"[bold red]OVERDUE by {-d.hours_left:.1f} h[/]"
    return f"{d.hours_left:.1f} h left"


def _categories(values: list[str]) -> list[str]:
    return [c for v in values for c in v.split(",") if c.strip()]


async def breach_add(args: argparse.Namespace, privacy: Privacy, console: Console) -> int:
    breach_id = await privacy.breaches.record(
        _actor(),
        summary=args.summary,
        categories=_categories(args.category),
        subjects_affected=args.subjects,
        consequences=args.consequences,
        measures=args.measures,
        discovered_at=parse_time(args.discovered, "--discovered"),
        occurred_at=parse_time(args.occurred, "--occurred"),
    )
    b = await privacy.breaches.get(breach_id)
    console.print(
        f"breach #{b.id} recorded; notify the supervisory authority by "
        f"{_stamp(b.deadline_at)} ({_clock_text(b, time.time())})"
    )
    return 0


async def breach_list(args: argparse.Namespace, privacy: Privacy, console: Console) -> int:
    now = time.time()
    breaches = await privacy.breaches.all(include_closed=not args.open)
    if args.json:
        print(json.dumps([b.as_dict(now) for b in breaches], indent=2))
        return 0
    table = Table(title=f"Breach register: {len(breaches)} breaches")
    for col in ("id", "status", "discovered", "summary", "categories", "subjects", "authority"):
        table.add_column(col)
    table.add_column("subjects told")
    for b in breaches:
        table.add_row(
            str(b.id),
            b.status,
            _stamp(b.discovered_at),
            b.summary if len(b.summary) <= 60 else b.summary[:57] + "…",
            ", ".join(b.categories),
            f"~{b.subjects_affected}",
            _clock_text(b, now),
            b.subjects_decision or "not yet",
        )
    console.print(table)
    overdue = [b for b in breaches if b.deadline(now).overdue]
    if overdue:
        ids = ", ".join(f"#{b.id}" for b in overdue)
        console.print(f"[bold red]past the 72-hour deadline without notification: {ids}[/]")
    return 0


async def breach_show(args: argparse.Namespace, privacy: Privacy, console: Console) -> int:
    now = time.time()
    b = await privacy.breaches.get(args.id)
    events = await privacy.breaches.events(args.id)
    if args.json:
        print(json.dumps({**b.as_dict(now), "events": events}, indent=2))
        return 0
    table = Table(title=f"Breach #{b.id} ({b.status})", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    rows = [
        ("what happened", b.summary),
        ("occurred", _stamp(b.occurred_at) if b.occurred_at else "unknown"),
        ("discovered", _stamp(b.discovered_at)),
        ("data categories", ", ".join(b.categories)),
        ("subjects affected", f"about {b.subjects_affected}"),
        ("likely consequences", b.consequences),
        ("measures taken", b.measures),
        ("72-hour deadline", _stamp(b.deadline_at)),
        ("authority", _clock_text(b, now)),
    ]
    if b.authority_ref:
        rows.append(("authority reference", b.authority_ref))
    if b.authority_note:
        rows.append(("authority note", b.authority_note))
    if b.subjects_decision == "notified":
        rows.append(("subjects told", f"{_stamp(b.subjects_at)}: {b.subjects_note}"))
    elif b.subjects_decision == "not-required":
        rows.append(("subjects not told", b.subjects_note))
    else:
        rows.append(("subjects told", "not yet recorded"))
    if b.closed_at is not None:
        rows.append(("closed", f"{_stamp(b.closed_at)} {b.close_note}".strip()))
    rows.append(("recorded", f"{_stamp(b.recorded_at)} by {b.recorded_by}"))
    for field, value in rows:
        table.add_row(field, value)
    console.print(table)
    log = Table(title="History")
    for col in ("when", "who", "role", "step", "detail"):
        log.add_column(col)
    for e in events:
        log.add_row(_stamp(e["at"]), e["actor"], e["role"], e["action"], e["detail"])
    console.print(log)
    return 0


async def breach_notify(args: argparse.Namespace, privacy: Privacy, console: Console) -> int:
    reg, actor = privacy.breaches, _actor()
    at = parse_time(args.at, "--at")
    if args.not_required is not None:
        if args.reference or args.how or args.delay_reason or args.at:
            raise CallvaultError(
                "--not-required records a decision not to notify: it takes no --at, "
                "--reference, --how or --delay-reason"
            )
        if args.party == "authority":
            b = await reg.authority_not_required(args.id, actor, reason=args.not_required)
        else:
            b = await reg.subjects_not_required(args.id, actor, reason=args.not_required)
        console.print(f"breach #{b.id}: {args.party} not notified, reason recorded ({b.status})")
        return 0
    if args.party == "authority":
        if args.how:
            raise CallvaultError("--how is for `notify ID subjects`")
        if not args.reference:
            raise CallvaultError("notify ID authority needs --reference (the authority's case ref)")
        b = await reg.notify_authority(
            args.id, actor, reference=args.reference, at=at, delay_reason=args.delay_reason or ""
        )
        late = " (after the 72-hour deadline)" if b.deadline(time.time()).late else ""
        console.print(f"breach #{b.id}: authority notified {_stamp(b.authority_at)}{late}")
        return 0
    if args.reference or args.delay_reason:
        raise CallvaultError("--reference and --delay-reason are for `notify ID authority`")
    if not args.how:
        raise CallvaultError("notify ID subjects needs --how (e.g. 'letter to each subject')")
    b = await reg.notify_subjects(args.id, actor, how=args.how, at=at)
    console.print(f"breach #{b.id}: subjects notified {_stamp(b.subjects_at)}")
    return 0


async def breach_close(args: argparse.Namespace, privacy: Privacy, console: Console) -> int:
    b = await privacy.breaches.close(args.id, _actor(), note=args.note)
    console.print(f"breach #{b.id} closed {_stamp(b.closed_at)}")
    return 0


# ---- records of processing: the config alone, no key or database needed
def ropa(console: Console) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from appliance.privacy import ropa as ropa_mod

        cfg = config_mod.load(Path(args.config))
        doc = ropa_mod.build(cfg)
        text = ropa_mod.to_json(doc) if args.format == "json" else ropa_mod.to_markdown(doc)
        if args.output is None:
            print(text, end="" if text.endswith("\n") else "\n")
            return 0
        out = Path(args.output)
        tmp = out.with_name(f".{out.name}.tmp")
        try:
            tmp.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
            tmp.replace(out)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise CallvaultError(f"cannot write {out}: {exc}") from None
        n = len(doc["processing_activities"])
        console.print(f"records of processing ({n} lines, {args.format}) written to {out}")
        return 0

    return run


def add_parsers(psub: Any, wrap: Wrap, console: Console) -> None:
    """`review`, `breach` and `ropa` under `privacy`; `wrap(handler)` opens the database."""
    from appliance.privacy.breach import CATEGORIES
    from appliance.privacy.review import OUTCOMES

    rv = psub.add_parser("review", help="human review queue (Art. 22)").add_subparsers(
        dest="review_cmd", required=True
    )
    ls = rv.add_parser("list", help="items flagged for a person's decision")
    ls.add_argument("--status", choices=("open", "decided", "all"), default="open")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(fn=wrap(review_list))
    dc = rv.add_parser("decide", help="record the reviewer's outcome (once per item)")
    dc.add_argument("id", type=int)
    dc.add_argument("outcome", choices=OUTCOMES)
    dc.add_argument("--note", default="", help="what was corrected or why rejected (required "
                    "for those; no personal data)")  # fmt: skip
    dc.add_argument("--role", default="reviewer", help="the role you decide under")
    dc.set_defaults(fn=wrap(review_decide))

    br = psub.add_parser("breach", help="personal data breach register (Art. 33/34)")
    bs = br.add_subparsers(dest="breach_cmd", required=True)
    add = bs.add_parser("add", help="record a breach; starts the 72-hour clock")
    add.add_argument("--summary", required=True, help="what happened (no personal data)")
    add.add_argument(
        "--category",
        action="append",
        required=True,
        help=f"data category, repeatable or comma-separated: {', '.join(CATEGORIES)}",
    )
    add.add_argument("--subjects", type=int, required=True, help="approx. subjects affected")
    add.add_argument("--consequences", required=True, help="likely consequences")
    add.add_argument("--measures", required=True, help="measures taken or proposed")
    add.add_argument("--discovered", help="when it was discovered (default: now)")
    add.add_argument("--occurred", help="when it happened, if known")
    add.set_defaults(fn=wrap(breach_add))
    bl = bs.add_parser("list", help="the register with each breach's 72-hour clock")
    bl.add_argument("--open", action="store_true", help="leave out closed breaches")
    bl.add_argument("--json", action="store_true")
    bl.set_defaults(fn=wrap(breach_list))
    sh = bs.add_parser("show", help="one breach and its history")
    sh.add_argument("id", type=int)
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(fn=wrap(breach_show))
    nt = bs.add_parser("notify", help="record the notification of the authority or subjects")
    nt.add_argument("id", type=int)
    nt.add_argument("party", choices=("authority", "subjects"))
    nt.add_argument("--at", help="when it was sent (default: now)")
    nt.add_argument("--reference", help="authority: its case reference")
    nt.add_argument("--delay-reason", help="authority: why later than 72 hours")
    nt.add_argument("--how", help="subjects: how they were told")
    nt.add_argument("--not-required", metavar="REASON", help="record why no notification")
    nt.set_defaults(fn=wrap(breach_notify))
    cl = bs.add_parser("close", help="close a breach once both notifications are recorded")
    cl.add_argument("id", type=int)
    cl.add_argument("--note", default="")
    cl.set_defaults(fn=wrap(breach_close))

    rp = psub.add_parser("ropa", help="records of processing (Art. 30) from the live config")
    rp.add_argument("--format", choices=("md", "json"), default="md")
    rp.add_argument("--output", help="write to this file (default: stdout)")
    rp.set_defaults(fn=ropa(console))
