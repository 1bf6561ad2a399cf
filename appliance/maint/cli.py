"""`callvault upgrade`, `callvault doctor`, `callvault support-bundle` (registered by
appliance.cli).

Exit codes: upgrade 0 done or nothing to do, 1 rolled back (the reason is printed), 2 refused
(a downgrade, a failed backup: nothing changed). doctor 0 all passed, 1 a check failed,
3 warnings only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from appliance import config as config_mod


def cmd_upgrade(args: argparse.Namespace, console: Console) -> int:
    from appliance.maint import upgrade
    from appliance.maint.progress import step_bar

    cfg = config_mod.load(Path(args.config))
    p = upgrade.plan(cfg)
    if args.plan:
        pending = ", ".join(f"{v:04d}" for v in p.pending) or "none"
        console.print(
            f"{p.database}: schema {p.current}, this release {p.newest}; pending {pending}"
        )
        return 0
    # plan, backup, [stop], migrate, [start], readiness: one tick each.
    total = 4 + (2 if args.restart else 0)
    with step_bar(console, "upgrade", total) as bar:
        out = asyncio.run(
            upgrade.upgrade(cfg, units=args.restart, ready_timeout_s=args.ready_timeout, steps=bar)
        )
    if out.ready:
        table = Table(title="readiness after the upgrade")
        for col in ("check", "result", "detail"):
            table.add_column(col)
        for c in out.ready:
            table.add_row(c.name, "pass" if c.ok else "[bold red]FAIL[/]", c.detail)
        console.print(table)
    if out.ok:
        if out.applied:
            console.print(
                f"upgraded {p.database} from schema {p.current} to {p.newest} "
                f"(backup {out.archive}) in {out.timings.get('total_s', 0):.1f} s"
            )
        return 0
    console.print(f"[bold red]upgrade failed[/]: {out.reason}")
    if out.rolled_back or not out.applied:
        console.print(
            f"the database is back at schema {p.current} (backup {out.archive}). "
            + (
                f"{' '.join(args.restart)} stay stopped: reinstall the previous release, then "
                "start them."
                if args.restart
                else "Reinstall the previous release before the appliance restarts."
            )
        )
    return 1


def cmd_doctor(args: argparse.Namespace, console: Console) -> int:
    from appliance.maint import doctor

    cfg = config_mod.load(Path(args.config))
    report = asyncio.run(doctor.run(cfg, deep=not args.quick, call=not args.no_call))
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        doctor.print_report(report, console)
    return report.exit_code


def cmd_bundle(args: argparse.Namespace, console: Console) -> int:
    from appliance.maint import bundle
    from appliance.maint.progress import activity

    cfg = config_mod.load(Path(args.config))
    with activity(console, "support bundle: doctor, logs, config (scrubbed)"):
        made = asyncio.run(bundle.create(cfg, Path(args.output) if args.output else None))
    console.print(
        f"wrote {made.path} ({made.bytes} bytes, {len(made.members)} files, "
        f"{made.scrubbed} values scrubbed). Read it before sending it on: it holds no phone "
        "number, name or secret the box knows of, but logs can quote anything."
    )
    return 0


def add_parser(sub: Any, console: Console) -> None:
    def bind(fn: Any) -> Any:
        return lambda args: fn(args, console)

    u = sub.add_parser(
        "upgrade",
        help="back up, migrate the database in one transaction, check readiness, roll back",
    )
    u.add_argument("--plan", action="store_true", help="only show the pending migrations")
    u.add_argument(
        "--restart",
        action="append",
        default=[],
        metavar="UNIT",
        help="systemd unit to stop before migrating and start after (repeatable)",
    )
    u.add_argument(
        "--ready-timeout",
        type=float,
        default=60.0,
        help="seconds the box has to become ready after the migration (default 60)",
    )
    u.set_defaults(fn=bind(cmd_upgrade))

    d = sub.add_parser("doctor", help="check the box and explain what is wrong (exit 1/3)")
    d.add_argument("--quick", action="store_true", help="model files by size stamp, without sha256")
    d.add_argument("--no-call", action="store_true", help="skip the test call to the echo line")
    d.add_argument("--json", action="store_true")
    d.set_defaults(fn=bind(cmd_doctor))

    b = sub.add_parser(
        "support-bundle",
        help="a tar.gz of logs, config, versions and doctor output, personal data removed",
    )
    b.add_argument("-o", "--output", help="file to write (default: in the current directory)")
    b.set_defaults(fn=bind(cmd_bundle))
