"""`callvault reports show|redo CALL_ID`: read a call's post-call report, or write it again.

Registered by appliance.cli. Both act as the OS user who ran them (`cli:<user>`, operator):
`show` is audited as `report.view` with the purpose given, `redo` reads the transcript
(audited) and replaces the report, flagging it for review when it does not validate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.syntax import Syntax

from appliance import config as config_mod
from appliance.config import Config

if TYPE_CHECKING:
    from appliance.privacy import Privacy

Handler = Callable[[argparse.Namespace, Config, "Privacy", Console], Awaitable[int]]


def _run(fn: Handler, console: Console) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from appliance.privacy import Privacy
        from appliance.store import Database

        cfg = config_mod.load(Path(args.config))

        async def go() -> int:
            async with Database(cfg.database) as db:
                return await fn(args, cfg, Privacy(cfg, db), console)

        return asyncio.run(go())

    return run


def _print(console: Console, doc: dict[str, Any]) -> None:
    when = datetime.fromtimestamp(float(doc["created_at"])).strftime("%Y-%m-%d %H:%M")
    review = f", review item #{doc['review_id']}" if doc["review_id"] is not None else ""
    console.print(
        f"report {doc['id']} of call {doc['call_id']} ({doc['line'] or 'no line'}): "
        f"[bold]{doc['status']}[/bold] after {doc['attempts']} attempt(s), {when}, "
        f"model {doc['model'] or '-'}{review}"
    )
    for err in doc["errors"]:
        console.print(f"  {err}")
    body = doc["report"] if doc["report"] is not None else {"candidate": doc["candidate"]}
    console.print(Syntax(json.dumps(body, indent=2, ensure_ascii=False), "json"))


async def show(args: argparse.Namespace, cfg: Config, privacy: Privacy, console: Console) -> int:
    from appliance.privacy.cli import operator
    from appliance.voice.report import ReportVault

    view = await ReportVault(privacy.db, privacy).read_report(
        args.call_id, operator(), args.purpose
    )
    if args.json:
        console.print_json(json.dumps(view.doc(), ensure_ascii=False))
    else:
        _print(console, view.doc())
    return 0


async def redo(args: argparse.Namespace, cfg: Config, privacy: Privacy, console: Console) -> int:
    from appliance.privacy.cli import operator
    from appliance.voice.report import ReportWriter
    from appliance.voice.report_model import load_report_model

    writer = ReportWriter(
        cfg, privacy.db, privacy, lambda: load_report_model(cfg), actor=operator()
    )
    result = await writer.report(args.call_id)
    review = f" (review item #{result.review_id})" if result.review_id is not None else ""
    console.print(
        f"report {result.report_id} of call {result.call_id}: {result.status} after "
        f"{result.attempts} attempt(s){review}"
    )
    for err in result.errors:
        console.print(f"  {err}")
    return 0 if result.status == "ok" else 1


def add_parser(sub: Any, console: Console) -> None:
    """`reports` and its subcommands on the main parser's subparsers."""
    rp = sub.add_parser("reports", help="post-call AI reports: show one, or write it again")
    rsub = rp.add_subparsers(dest="reports_cmd", required=True)
    sh = rsub.add_parser("show", help="decrypt and print a call's report (audited)")
    sh.add_argument("call_id")
    sh.add_argument("--purpose", default="operator review", help="why (recorded in the audit)")
    sh.add_argument("--json", action="store_true", help="the report and its metadata as JSON")
    sh.set_defaults(fn=_run(show, console))
    rd = rsub.add_parser("redo", help="write the call's report again from its transcript")
    rd.add_argument("call_id")
    rd.set_defaults(fn=_run(redo, console))
