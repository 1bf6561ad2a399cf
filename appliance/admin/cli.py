"""`callvault admin …`: serve the admin listener; API tokens; admin UI users."""

from __future__ import annotations

import argparse
import asyncio
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from appliance import config as config_mod
from appliance.config import Config


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def serve(cfg: Config, console: Console, *, tls: bool = True) -> int:
    import uvicorn

    from appliance.admin.listener import uvicorn_config
    from appliance.ops.logging import configure as configure_logging

    scheme = "https" if tls else "http"
    console.print(f"admin API on {scheme}://{cfg.admin.bind}:{cfg.admin.port}/ (schema: /schema)")
    configure_logging(cfg.ops.log_format, cfg.ops.log_level)  # JSON, masked, for journald
    uvicorn.Server(uvicorn_config(cfg, tls=tls)).run()
    return 0


async def _tokens(cfg: Config, args: argparse.Namespace, console: Console) -> int:
    from appliance.admin.services import open_services
    from appliance.admin.tokens import SCOPES
    from appliance.privacy.cli import operator

    async with open_services(cfg) as svc:
        if args.action == "create":
            if not args.name or not args.scope:
                console.print("usage: callvault admin token create NAME --scope S [--scope S]")
                return 2
            token = await svc.tokens.create(
                args.name, args.scope, operator(), ttl_days=args.ttl_days
            )
            console.print(f"token {args.name} ({' '.join(sorted(args.scope))}); shown once:")
            print(token, flush=True)
        elif args.action == "revoke":
            await svc.tokens.revoke(args.name, operator())
            console.print(f"revoked {args.name}")
        elif args.action == "scopes":
            for name, what in SCOPES.items():
                console.print(f"{name:16} {what}")
        else:
            t = Table("name", "scopes", "created", "by", "expires", "last used", "revoked")
            for v in await svc.tokens.all():
                t.add_row(
                    v.name,
                    " ".join(v.scopes),
                    _when(v.created_at),
                    v.created_by,
                    _when(v.expires_at),
                    _when(v.last_used_at),
                    _when(v.revoked_at),
                )
            console.print(t)
    return 0


async def _users(cfg: Config, args: argparse.Namespace, console: Console) -> int:
    from appliance.admin.services import open_services
    from appliance.privacy.cli import operator

    async with open_services(cfg) as svc:
        if args.action == "init":
            first = await svc.users.first_admin(operator(), args.name or "admin")
            if first is None:
                console.print("users exist already: no first admin created")
                return 0
            name, password = first
            if args.password_file:
                # For the installer: the password goes to a root-only file, not to a log.
                target = Path(args.password_file)
                target.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(f"{name} {password}\n")
                console.print(f"first admin {name}: one-time password written to {target}")
            else:
                print(f"first admin: user {name}, one-time password {password}", flush=True)
                console.print("(shown once; it must be changed at the first login)")
        elif args.action == "create":
            if not args.name or not args.role:
                console.print("usage: callvault admin user create NAME --role ROLE [--line L]")
                return 2
            password = await svc.users.create(args.name, args.role, operator(), lines=args.line)
            print(f"user {args.name} ({args.role}): one-time password {password}", flush=True)
        elif args.action == "reset":
            password = await svc.users.reset(args.name or "", operator())
            print(f"user {args.name}: new one-time password {password}", flush=True)
        elif args.action == "disable":
            await svc.users.disable(args.name or "", operator())
            console.print(f"disabled {args.name}; their sessions ended")
        else:
            t = Table("user", "role", "lines", "must change password")
            for u in await svc.users.all():
                t.add_row(u.username, u.role, ",".join(u.lines), "yes" if u.must_change else "")
            console.print(t)
    return 0


def add_parser(sub: Any, console: Console) -> None:
    a = sub.add_parser("admin", help="the admin listener (JSON API) and its API tokens")
    asub = a.add_subparsers(dest="admin_cmd", required=True)
    s = asub.add_parser("serve", help="serve the admin API over HTTPS")
    s.add_argument(
        "--no-tls", action="store_true", help="plain HTTP (only for tests behind loopback)"
    )
    s.set_defaults(fn=lambda args: serve(_load(args), console, tls=not args.no_tls))
    st = asub.add_parser("stop", help="stop an admin listener started by `callvault demo`")
    st.set_defaults(fn=lambda args: _stop(_load(args), console))
    t = asub.add_parser("token", help="create, list or revoke API tokens")
    t.add_argument("action", choices=["create", "list", "revoke", "scopes"])
    t.add_argument("name", nargs="?")
    t.add_argument("--scope", action="append", default=[], help="repeat for several scopes")
    t.add_argument("--ttl-days", type=int, default=None)
    t.set_defaults(fn=lambda args: asyncio.run(_tokens(_load(args), args, console)))
    u = asub.add_parser("user", help="admin UI users: init (first admin), create, list, ...")
    u.add_argument("action", choices=["init", "create", "list", "reset", "disable"])
    u.add_argument("name", nargs="?")
    u.add_argument("--role", choices=["admin", "dpo", "operator", "auditor"])
    u.add_argument("--line", action="append", default=[], help="operators: a line they work on")
    u.add_argument("--password-file", help="init: write the one-time password here (0600)")
    u.set_defaults(fn=lambda args: asyncio.run(_users(_load(args), args, console)))


def _stop(cfg: Config, console: Console) -> int:
    from appliance.admin.launch import stop

    console.print("stopped" if stop(cfg) else "no admin listener started by the demo is running")
    return 0


def _load(args: argparse.Namespace) -> Config:
    return config_mod.load(Path(args.config))
