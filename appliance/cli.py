"""`callvault …`: the appliance's command line.

Errors meant for the operator (CallvaultError) are printed as one line, without a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from appliance import config as config_mod
from appliance.config import Config
from appliance.errors import CallvaultError
from appliance.store import Database
from appliance.telephony import render

SANDBOX = Path(__file__).resolve().parents[1] / "asterisk" / "sandbox"
# Piped output (scripts, logs) gets wide lines instead of columns cut to 80 characters.
console = Console(width=None if sys.stdout.isatty() else 200)


def _config(args: argparse.Namespace) -> Config:
    return config_mod.load(Path(args.config))


def _sandbox(cfg: Config, *argv: str) -> int:
    if not cfg.asterisk.sandbox:
        raise CallvaultError(
            "asterisk.sandbox is false: Asterisk is managed by systemd on this box "
            "(systemctl start asterisk)"
        )
    env = {**os.environ, "CALLVAULT_ROOTFS": str(cfg.asterisk.root)}
    env["CALLVAULT_AMI_HOST"] = cfg.asterisk.ami_host
    env["CALLVAULT_AMI_PORT"] = str(cfg.asterisk.ami_port)
    return subprocess.run([str(SANDBOX), *argv], env=env, check=False).returncode


def cmd_asterisk(args: argparse.Namespace) -> int:
    cfg = _config(args)
    if args.action in {"render", "up"}:
        files = render.render(cfg)
        target = render.write(cfg, files)
        console.print(f"rendered {len(files)} files into {target}")
        if args.action == "render":
            return 0
    if args.action == "cli":
        return _sandbox(cfg, "cli", " ".join(args.command))
    return _sandbox(cfg, args.action)


def cmd_config_check(args: argparse.Namespace) -> int:
    cfg = _config(args)
    render.render(cfg)
    console.print(
        f"config OK: {len(cfg.lines)} lines, {len(cfg.extensions)} extensions, "
        f"{len(cfg.ip_peers)} IP peers ({cfg.source})"
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from appliance.server import run_until_signalled

    cfg = _config(args)
    asyncio.run(run_until_signalled(cfg, admin=not args.no_admin))
    return 0


def cmd_call(args: argparse.Namespace) -> int:
    from appliance.server import originate_once

    cfg = _config(args)
    line = args.line or (cfg.lines[0].name if cfg.lines else "")
    call_id = asyncio.run(originate_once(cfg, args.number, line))
    console.print(f"calling {args.number} for line {line}: call id {call_id}")
    return 0


def _ts(value: object) -> str:
    if value is None:
        return "-"
    return datetime.fromtimestamp(float(str(value))).strftime("%Y-%m-%d %H:%M:%S")


def cmd_calls(args: argparse.Namespace) -> int:
    cfg = _config(args)

    async def fetch() -> list[dict[str, object]]:
        async with Database(cfg.database) as db:
            return await db.cdrs(limit=args.limit)

    rows = asyncio.run(fetch())
    if args.json:
        import json

        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title=f"Last {len(rows)} CDRs")
    for col in (
        "start",
        "dir",
        "line",
        "from",
        "name",
        "to",
        "dur",
        "bill",
        "disposition",
        "cause",
    ):
        table.add_column(col)
    for r in rows:
        table.add_row(
            _ts(r["start_at"]),
            str(r["direction"]),
            str(r["line"] or "-"),
            str(r["calling_number"]),
            str(r["caller_name"]),
            str(r["dialed_number"]),
            f"{r['duration_s']}s",
            f"{r['billable_s']}s",
            str(r["disposition"]),
            f"{r['hangup_cause']} {r['hangup_cause_text']}",
        )
    console.print(table)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from appliance.telephony.demo import run_demo

    cfg = _config(args)
    return asyncio.run(run_demo(cfg, console))


def cmd_models(args: argparse.Namespace) -> int:
    from appliance.models import commands

    cfg = _config(args)
    if args.action == "install":
        return commands.install(cfg, console, args.names)
    if args.action == "verify":
        return commands.verify(cfg, console, args.names)
    return commands.list_models(cfg, console)


def cmd_net(args: argparse.Namespace) -> int:
    import json

    from appliance import net

    cfg = _config(args)
    with net.Netlink(args.netns) as nl:
        if args.action == "apply":
            steps = net.apply(cfg.network, nl)
            for step in steps:
                console.print(f"changed: {step}")
            console.print(f"network: {len(steps)} changes" if steps else "network: in sync")
            return 0
        state = net.read_state(nl)
        pending = net.diff(cfg.network, state)
    if args.json:
        print(json.dumps({**state.as_dict(), "pending": [str(s) for s in pending]}, indent=2))
        return 0
    for a in state.addresses:
        console.print(f"{a.ifname:<16} {a.cidr}")
    for r in state.routes:
        managed = " (callvault)" if r.ours else ""
        console.print(f"route {r.destination} via {r.gateway or '-'} dev {r.ifname}{managed}")
    console.print("\n".join(f"pending: {s}" for s in pending) or "in sync with the config")
    return 0


def build_parser() -> argparse.ArgumentParser:  # noqa: PLR0915 - one registration per command
    p = argparse.ArgumentParser(prog="callvault", description=__doc__)
    p.add_argument(
        "--config",
        default=os.environ.get("CALLVAULT_CONFIG", str(config_mod.DEFAULT_PATH)),
        help="TOML config (default: $CALLVAULT_CONFIG or /etc/callvault/callvault.toml)",
    )
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="cmd", required=True)

    a = sub.add_parser("asterisk", help="render configs, start/stop the Asterisk sandbox")
    a.add_argument("action", choices=["render", "up", "down", "status", "cli"])
    a.add_argument("command", nargs="*", help="CLI command for `cli`")
    a.set_defaults(fn=cmd_asterisk)

    c = sub.add_parser("config", help="validate the config")
    c.add_argument("action", choices=["check"])
    c.set_defaults(fn=cmd_config_check)

    s = sub.add_parser("serve", help="run the AMI client, the SIP agent and the admin listener")
    s.add_argument(
        "--no-admin",
        action="store_true",
        help="leave the admin UI/API to its own process (the callvault-admin systemd unit)",
    )
    s.set_defaults(fn=cmd_serve)

    o = sub.add_parser("call", help="originate an outbound call connected to a line")
    o.add_argument("number")
    o.add_argument("--line", help="line to connect the callee to (default: the first)")
    o.set_defaults(fn=cmd_call)

    ls = sub.add_parser("calls", help="list recent CDRs")
    ls.add_argument("--limit", type=int, default=20)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(fn=cmd_calls)

    m = sub.add_parser("models", help="install, verify and list the local models")
    m.add_argument("action", choices=["install", "verify", "list"])
    m.add_argument("names", nargs="*", help="models (default: all in the manifest)")
    m.set_defaults(fn=cmd_models)

    n = sub.add_parser("net", help="apply the [network] config (pyroute2) or show the live state")
    n.add_argument("action", choices=["apply", "show"])
    n.add_argument("--netns", help="operate in this network namespace (/run/netns/NAME)")
    n.add_argument("--json", action="store_true", help="`show` as JSON (what the admin UI reads)")
    n.set_defaults(fn=cmd_net)

    from appliance.privacy.cli import add_parser as add_privacy_parser

    add_privacy_parser(sub, console)

    from appliance.privacy.backup_cli import add_parser as add_backup_parser

    add_backup_parser(sub, console)

    from appliance.privacy.retention_cli import add_timer_parser

    add_timer_parser(sub, console)

    from appliance.voice.cli import add_parser as add_transcripts_parser

    add_transcripts_parser(sub, console)

    from appliance.admin.cli import add_parser as add_admin_parser

    add_admin_parser(sub, console)

    from appliance.voice.report_cli import add_parser as add_reports_parser

    add_reports_parser(sub, console)

    __import__("appliance.campaign.cli").campaign.cli.add_parser(sub, console)  # one statement

    from appliance.ops.cli import add_parser as add_ops_parser

    add_ops_parser(sub, console)

    from appliance.maint.cli import add_parser as add_maint_parser

    add_maint_parser(sub, console)

    __import__("appliance.voice.dialogue.cli").voice.dialogue.cli.add_parser(sub, console)

    from appliance.pbx.cli import add_parser as add_pbx_parser

    add_pbx_parser(sub, console)

    d = sub.add_parser("demo", help="start everything and place a scripted call to the AI line")
    d.set_defaults(fn=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        return int(args.fn(args))
    except CallvaultError as exc:
        print(f"callvault: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
