"""`callvault transcripts …`: read a call's transcripts, search them, see the post-call queue.

Registered by appliance.cli. Reads act as the OS user who ran the command (`cli:<user>`, role
operator) and are audited: `transcript.view` per transcript shown, `transcript.search` (counts
only, never the words) per search.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from appliance.privacy.cli import with_privacy

if TYPE_CHECKING:
    from appliance.privacy import Privacy

# The privacy engine's command wrapper: config, database and `Privacy` per command.
_run = with_privacy


def clock(seconds: float) -> str:
    """Offset into a recording as m:ss.s."""
    minutes, secs = divmod(max(seconds, 0.0), 60.0)
    return f"{int(minutes)}:{secs:04.1f}"


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


async def show(args: argparse.Namespace, privacy: Privacy, console: Console) -> int:
    from appliance.privacy.cli import operator
    from appliance.voice.transcripts import TranscriptError, TranscriptVault

    vault = TranscriptVault(privacy.db, privacy)
    found = await vault.read(args.call_id, actor=operator(), purpose=args.purpose)
    if not found:
        job = await privacy.db.post_call_job(args.call_id)
        state = f" (post-call job: {job['stage']})" if job else ""
        raise TranscriptError(f"call {args.call_id} has no transcript{state}")
    if args.json:
        print(json.dumps([{"id": t.id, **t.doc()} for t in found], indent=2))
        return 0
    for t in found:
        console.print(
            f"[bold]{t.leg}[/bold] (line {t.line}, {t.language} p={t.language_prob:.2f}, "
            f"{t.model}, {t.duration_s:.1f}s, transcript {t.id})"
        )
        for s in t.segments:
            console.print(f"  [{clock(s.start)}-{clock(s.end)}] {escape(s.text)}")
    # Both sides in the order they were said.
    if len(found) > 1:
        console.print("[bold]conversation[/bold]")
        turns = sorted((s.start, t.leg, s.text) for t in found for s in t.segments)
        for start, leg, text in turns:
            console.print(f"  [{clock(start)}] {leg}: {escape(text)}")
    return 0


async def search(args: argparse.Namespace, privacy: Privacy, console: Console) -> int:
    from appliance.privacy.cli import operator
    from appliance.voice.transcripts import TranscriptVault

    vault = TranscriptVault(privacy.db, privacy)
    query = " ".join(args.words)
    matches = await vault.search(query, actor=operator(), purpose=args.purpose)
    table = Table(title=f"{len(matches)} call(s) with every word of {query!r}")
    for col in ("call", "started", "line", "leg", "at"):
        table.add_column(col)
    for m in matches[: args.limit]:
        call = await privacy.db.call(m.call_id)
        started = _when(call.started_at) if call else "-"
        for h in m.hits:
            table.add_row(m.call_id, started, h.line, h.leg, clock(h.start_s))
    console.print(table)
    return 0


async def jobs(args: argparse.Namespace, privacy: Privacy, console: Console) -> int:
    rows = await privacy.db.post_call_jobs(unfinished=not args.all)
    table = Table(title=f"{len(rows)} post-call job(s)")
    for col in ("call", "stage", "attempts", "next", "last error"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            str(r["call_id"]),
            str(r["stage"]),
            str(r["attempts"]),
            _when(float(r["next_at"])),
            escape(str(r["last_error"])),
        )
    console.print(table)
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], console: Console) -> None:
    t = sub.add_parser("transcripts", help="post-call transcripts: show, search, job queue")
    tsub = t.add_subparsers(dest="transcripts_cmd", required=True)

    s = tsub.add_parser("show", help="a call's transcripts, per leg with times (audited)")
    s.add_argument("call_id")
    s.add_argument("--purpose", default="operator review", help="why (goes into the audit log)")
    s.add_argument("--json", action="store_true", help="segments and words as JSON")
    s.set_defaults(fn=_run(show, console))

    q = tsub.add_parser("search", help="calls in which all the words were said (audited)")
    q.add_argument("words", nargs="+")
    q.add_argument("--purpose", default="operator search", help="why (goes into the audit log)")
    q.add_argument("--limit", type=int, default=50, help="calls to list")
    q.set_defaults(fn=_run(search, console))

    j = tsub.add_parser("jobs", help="post-call jobs not finished yet (transcribe, report)")
    j.add_argument("--all", action="store_true", help="finished ones too")
    j.set_defaults(fn=_run(jobs, console))
