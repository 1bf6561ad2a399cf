"""`callvault backup create|verify|restore|list|run` (appliance.privacy.backup).

Registered by appliance.cli. `run` is what callvault-backup.service starts every night;
`verify` and `create` exit 1 when a check fails, so the unit (and a script) sees it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from appliance import config as config_mod
from appliance.maint.progress import activity
from appliance.privacy import backup


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _print_report(report: backup.Report, console: Console, seconds: float) -> int:
    table = Table(title=f"verify {report.archive.name}")
    for col in ("check", "result", "detail"):
        table.add_column(col)
    for c in report.checks:
        table.add_row(c.name, "pass" if c.ok else "[bold red]FAIL[/]", c.detail)
    console.print(table)
    verdict = "passed" if report.ok else f"FAILED ({len(report.failures)} checks)"
    console.print(f"{report.archive.name}: verification {verdict} in {seconds:.1f} s")
    return 0 if report.ok else 1


def _print_created(created: backup.Created, console: Console) -> None:
    console.print(
        f"wrote {created.archive} ({_size(created.stored_bytes)}, {created.files} files, "
        f"{created.rows} rows) in {created.seconds:.1f} s"
    )
    if created.not_included:
        console.print(
            f"[bold yellow]warning[/]: {created.not_included} recordings lie outside "
            "recordings_dir and are not in the archive"
        )


def cmd_create(args: argparse.Namespace, console: Console) -> int:
    cfg = config_mod.load(Path(args.config))
    t0 = time.monotonic()
    with activity(console, "backup: snapshot, encrypt, verify"):
        created = asyncio.run(backup.create(cfg))
    _print_created(created, console)
    return _print_report(created.report, console, time.monotonic() - t0 - created.seconds)


def cmd_verify(args: argparse.Namespace, console: Console) -> int:
    cfg = config_mod.load(Path(args.config))
    t0 = time.monotonic()
    with activity(console, "verify: decrypt into scratch, check"):
        report = asyncio.run(backup.verify(cfg, args.archive))
    return _print_report(report, console, time.monotonic() - t0)


def cmd_restore(args: argparse.Namespace, console: Console) -> int:
    cfg = config_mod.load(Path(args.config))
    with activity(console, "restore: verify, re-apply erasures, swap in"):
        done = asyncio.run(backup.restore(cfg, args.archive, force=args.force))
    console.print(
        f"restored {done.archive.name}: {done.rows} rows, {done.files} files; "
        f"{done.reapplied} erasure(s) made since the archive were applied again"
    )
    console.print(
        f"the replaced database and recordings are in {done.aside}: they hold personal data, "
        "delete them once the restore is confirmed"
    )
    return 0


def _listed(a: backup.Listed) -> dict[str, Any]:
    return {
        "archive": str(a.path),
        "created_at": a.created_at,
        "bytes": a.stored_bytes,
        "verified": a.verified,
    }


def cmd_list(args: argparse.Namespace, console: Console) -> int:
    cfg = config_mod.load(Path(args.config))
    archives = backup.list_archives(cfg)
    if args.json:
        print(json.dumps([_listed(a) for a in archives], indent=2))
        return 0
    table = Table(title=f"{len(archives)} archives in {cfg.backup.dir} (keep {cfg.backup.keep})")
    for col in ("archive", "created", "size", "verified"):
        table.add_column(col)
    for a in archives:
        v = a.verified
        if v is None:
            state = "never"
        elif v.get("ok"):
            state = f"ok {_when(float(v['at']))}"
        else:
            state = f"[bold red]FAILED[/] {_when(float(v['at']))}: {', '.join(v.get('failed', []))}"
        table.add_row(a.path.name, _when(a.created_at), _size(a.stored_bytes), state)
    console.print(table)
    return 0


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    cfg = config_mod.load(Path(args.config))
    t0 = time.monotonic()
    with activity(console, "backup: snapshot, encrypt, verify, prune"):
        created, removed = asyncio.run(backup.run(cfg))
    _print_created(created, console)
    _print_report(created.report, console, time.monotonic() - t0 - created.seconds)
    for path in removed:
        console.print(f"pruned {path.name}")
    return 0


def add_parser(sub: Any, console: Console) -> None:
    """`backup` and its subcommands on the main parser's subparsers."""
    b = sub.add_parser("backup", help="encrypted backups: create, verify, restore, list, run")
    bsub = b.add_subparsers(dest="backup_cmd", required=True)

    def bind(fn: Any) -> Any:
        return lambda args: fn(args, console)

    bsub.add_parser(
        "create", help="write an encrypted archive of the database and recordings, then verify it"
    ).set_defaults(fn=bind(cmd_create))
    v = bsub.add_parser("verify", help="decrypt into a scratch directory and check everything")
    v.add_argument("archive", nargs="?", help="archive path or name (default: the newest)")
    v.set_defaults(fn=bind(cmd_verify))
    r = bsub.add_parser(
        "restore", help="replace the database and recordings with an archive's (appliance stopped)"
    )
    r.add_argument("archive", help="archive path or name in backup.dir")
    r.add_argument(
        "--force",
        action="store_true",
        help="restore even though another process has the database open",
    )
    r.set_defaults(fn=bind(cmd_restore))
    ls = bsub.add_parser("list", help="archives with their verification state")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(fn=bind(cmd_list))
    bsub.add_parser(
        "run", help="create + verify + prune to backup.keep (callvault-backup.service)"
    ).set_defaults(fn=bind(cmd_run))
