"""`callvault alerts list|ack` and `callvault log-level [LEVEL]`."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from appliance import config as config_mod
from appliance.errors import CallvaultError
from appliance.ops.logging import LEVELS, SETTING


def _cfg(args: argparse.Namespace) -> config_mod.Config:
    return config_mod.load(Path(args.config))


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M") if ts else "-"


async def _alerts(args: argparse.Namespace, console: Console) -> int:
    from appliance.ops.alerts import Alerts
    from appliance.store import Database

    cfg = _cfg(args)
    async with Database(cfg.database) as db:
        alerts = Alerts(db)
        if args.alerts_cmd == "ack":
            if not await alerts.ack(args.id, f"cli:{getpass.getuser()}"):
                raise CallvaultError(f"no open, unacknowledged alert {args.id}")
            console.print(f"alert {args.id} acknowledged")
            return 0
        rows = await alerts.list(open_only=not args.all)
    if args.json:
        print(json.dumps([asdict(a) for a in rows], indent=2))
        return 0
    if not rows:
        console.print("no open alerts")
        return 0
    t = Table("id", "severity", "kind", "key", "message", "since", "count", "ack", "state")
    for a in rows:
        t.add_row(
            str(a.id), a.severity, a.kind, a.key, a.message, _when(a.first_at), str(a.count),
            a.acked_by or "", "open" if a.open else f"resolved {_when(a.resolved_at)}",
        )  # fmt: skip
    console.print(t)
    # Exit 1 while a critical alert is open: scripts and monitoring can use the code.
    return 1 if any(a.open and a.severity == "critical" for a in rows) else 0


async def _log_level(args: argparse.Namespace, console: Console) -> int:
    from appliance.store import Database

    cfg = _cfg(args)
    async with Database(cfg.database) as db:
        if args.level is None:
            current = await db.ops_setting(SETTING)
            console.print(
                f"log level: {current or cfg.ops.log_level}" + ("" if current else " (config)")
            )
            return 0
        level = args.level.upper()
        if args.level.lower() == "default":
            level = cfg.ops.log_level
        await db.ops_setting_set(SETTING, level, at=time.time(), by=f"cli:{getpass.getuser()}")
    console.print(f"log level set to {level}; running services follow within seconds")
    return 0


def add_parser(sub: Any, console: Console) -> None:
    a = sub.add_parser("alerts", help="list and acknowledge alerts (also on the admin UI)")
    asub = a.add_subparsers(dest="alerts_cmd", required=True)
    ls = asub.add_parser("list", help="open alerts (exit 1 while a critical one is open)")
    ls.add_argument("--all", action="store_true", help="resolved ones too")
    ls.add_argument("--json", action="store_true")
    ack = asub.add_parser("ack", help="acknowledge an open alert")
    ack.add_argument("id", type=int)
    a.set_defaults(fn=lambda args: asyncio.run(_alerts(args, console)))

    lv = sub.add_parser("log-level", help="show or change the services' log level at run time")
    lv.add_argument(
        "level",
        nargs="?",
        type=str.upper,
        choices=[*LEVELS, "DEFAULT"],
        help="new level; DEFAULT goes back to [ops] log_level",
    )
    lv.set_defaults(fn=lambda args: asyncio.run(_log_level(args, console)))
