"""`callvault pbx show|status|set|remove|enable|disable|versions|rollback|apply|blocks|unblock`.

`set KIND` takes the object as JSON (the API's shape), e.g.
`callvault pbx set trunk '{"name": "carrier", "host": "192.0.2.10", "dids": ["4631100200"]}'`.
A new extension's generated SIP password is printed once.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from appliance import config as config_mod
from appliance.errors import ConfigError
from appliance.pbx import admin as pa
from appliance.pbx.apply import Applied
from appliance.pbx.security import SipGuard
from appliance.pbx.status import pbx_status
from appliance.privacy import Actor, Privacy
from appliance.store import Database


def _actor() -> Actor:
    return Actor(name=f"cli:{getpass.getuser()}", role="admin")


def _applied(console: Console, a: Applied) -> None:
    reloaded = ", ".join(a.reloaded) or "nothing (no change, or Asterisk not running)"
    console.print(f"v{a.version} live: {a.note}; reloaded {reloaded} in {a.elapsed_ms:.0f} ms")


async def _run(args: argparse.Namespace, console: Console) -> int:  # noqa: PLR0912, PLR0915
    cfg = config_mod.load(Path(args.config))
    async with Database(cfg.database) as db:
        privacy = Privacy(cfg, db)
        async with pa.manager(cfg, db, privacy) as m:
            cmd = args.pbx_cmd
            if cmd == "show":
                version, pbx = await m.current()
                print(json.dumps({"version": version, **pa.view(pbx)}, indent=2))
            elif cmd == "status":
                _, pbx = await m.current()
                st = await pbx_status(m.ami, pbx)
                if not st.reachable:
                    console.print(f"[yellow]{st.error}[/yellow]")
                t = Table("trunk", "auth", "registration", "reachable", "error")
                for tr in st.trunks:
                    t.add_row(tr.name, tr.auth, tr.registration, tr.reachable, tr.last_error)
                console.print(t)
                e = Table("extension", "name", "registered", "user agent", "address")
                for x in st.extensions:
                    e.add_row(
                        x.number, x.name, "yes" if x.registered else "no", x.user_agent, x.address
                    )
                console.print(e)
            elif cmd == "set":
                try:
                    data: Any = json.loads(args.json)
                except ValueError as exc:
                    raise ConfigError("json", f"not JSON: {exc}") from None
                if not isinstance(data, dict):
                    raise ConfigError("json", "an object expected")
                if args.regenerate_password:
                    data["regenerate_password"] = True
                applied, once = await pa.save(m, args.kind, data, _actor())
                _applied(console, applied)
                if once is not None:
                    console.print(f"SIP password (shown once): [bold]{once}[/bold]")
            elif cmd == "remove":
                _applied(console, await pa.delete(m, args.kind, args.key, _actor()))
            elif cmd in ("enable", "disable"):
                _applied(
                    console, await pa.set_enabled(m, args.kind, args.key, cmd == "enable", _actor())
                )
            elif cmd == "versions":
                t = Table("version", "when", "who", "change")
                for v in await db.pbx_versions():
                    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v["created_at"]))
                    t.add_row(str(v["id"]), when, str(v["actor"]), str(v["note"]))
                console.print(t)
            elif cmd == "rollback":
                _applied(console, await m.rollback(_actor(), args.to))
            elif cmd == "apply":
                _, pbx = await m.current()
                _applied(console, await m.apply(pbx, _actor(), "re-apply the live version"))
            elif cmd == "blocks":
                for b in await db.pbx_blocks(active_at=time.time()):
                    console.print(f"{b['address']}  {b['failures']} failures ({b['reason']})")
            elif cmd == "unblock":
                gone = await SipGuard(m).unblock(args.address, _actor())
                console.print(f"{args.address} {'unblocked' if gone else 'was not blocked'}")
    return 0


def add_parser(sub: Any, console: Console) -> None:
    p = sub.add_parser("pbx", help="trunks, extensions, inbound routes, outbound rules")
    ps = p.add_subparsers(dest="pbx_cmd", required=True)
    ps.add_parser("show", help="the live configuration as JSON (no passwords)")
    ps.add_parser("status", help="trunk and desk-phone registrations (over AMI)")
    s = ps.add_parser("set", help="create or replace an object (JSON), apply it")
    s.add_argument("kind", choices=[*pa.CLASSES, "settings"])
    s.add_argument("json")
    s.add_argument("--regenerate-password", action="store_true", help="extensions: new secret")
    for name in ("remove", "enable", "disable"):
        r = ps.add_parser(name, help=f"{name} an object and apply")
        r.add_argument("kind", choices=list(pa.CLASSES))
        r.add_argument("key", help="trunk/rule name, extension number or route DID")
    ps.add_parser("versions", help="applied versions, newest first")
    rb = ps.add_parser("rollback", help="apply an earlier version (default: the previous one)")
    rb.add_argument("--to", type=int)
    ps.add_parser("apply", help="re-render and apply the live version (after an upgrade)")
    ps.add_parser("blocks", help="addresses blocked from SIP")
    u = ps.add_parser("unblock", help="lift a SIP block")
    u.add_argument("address")
    p.set_defaults(fn=lambda args: asyncio.run(_run(args, console)))
