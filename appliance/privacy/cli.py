"""`callvault privacy …`: keys, audit chain, do-not-call list, subject lookup.

Registered by appliance.cli; kept here so the privacy commands live with their engine. Every
command acts as the OS user who ran it (`cli:<user>`, role operator) in the audit chain.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from appliance import config as config_mod
from appliance.errors import CallvaultError

if TYPE_CHECKING:
    from appliance.privacy import Actor, Privacy

Handler = Callable[[argparse.Namespace, "Privacy", Console], Awaitable[int]]


def operator() -> Actor:
    from appliance.privacy import Actor

    return Actor(name=f"cli:{getpass.getuser()}", role="operator")


def with_privacy(fn: Handler, console: Console) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from appliance.privacy import Privacy
        from appliance.store import Database

        cfg = config_mod.load(Path(args.config))

        async def go() -> int:
            async with Database(cfg.database) as db:
                return await fn(args, Privacy(cfg, db), console)

        return asyncio.run(go())

    return run


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


async def keys_rotate(args: argparse.Namespace, privacy: Privacy, console: Console) -> int:
    new_pass = None
    if args.new_passphrase_file:
        try:
            new_pass = await asyncio.to_thread(Path(args.new_passphrase_file).read_bytes)
        except OSError as exc:
            raise CallvaultError(f"cannot read {args.new_passphrase_file}: {exc}") from None
        new_pass = new_pass.rstrip(b"\r\n")
    r = await privacy.keyring.rotate(new_pass)
    await privacy.audit.record(
        operator(), "keys.rotate", "master-key", "key management", f"{r.old_kek}->{r.new_kek}"
    )
    console.print(f"master key rotated {r.old_kek} → {r.new_kek}: {r.rewrapped} keys re-wrapped")
    if new_pass is not None:
        console.print("put the new passphrase into privacy.passphrase_file before the next start")
    return 0


async def audit_verify(args: argparse.Namespace, privacy: Privacy, console: Console) -> int:
    v = await privacy.audit.verify()
    if not v.ok:
        raise CallvaultError(
            f"audit chain broken at row {v.first_bad_seq}: {v.reason} "
            f"({v.rows} rows before it verify)"
        )
    console.print(f"audit chain OK: {v.rows} rows, head {v.head_seq} {v.head_hash}")
    if v.sealed_through:
        console.print(f"rows 1-{v.sealed_through} dropped by retention under a sealed checkpoint")
    return 0


async def dnc_add(args: argparse.Namespace, privacy: Privacy, console: Console) -> int:
    added = await privacy.dnc.add(
        args.number, source=args.source, reason=args.reason, actor=operator()
    )
    console.print("added" if added else "already on the do-not-call list (unchanged)")
    return 0


async def dnc_remove(args: argparse.Namespace, privacy: Privacy, console: Console) -> int:
    if not await privacy.dnc.remove(args.number, actor=operator()):
        raise CallvaultError(f"{args.number} is not on the do-not-call list")
    console.print("removed")
    return 0


async def dnc_list(args: argparse.Namespace, privacy: Privacy, console: Console) -> int:
    entries = await privacy.dnc.entries()
    await privacy.audit.record(operator(), "dnc.list", "dnc", args.purpose, f"rows={len(entries)}")
    if args.json:
        print(json.dumps([e.__dict__ for e in entries], indent=2))
        return 0
    table = Table(title=f"Do-not-call list: {len(entries)} numbers")
    for col in ("number", "source", "reason", "added", "by"):
        table.add_column(col)
    for e in entries:
        table.add_row(e.number, e.source, e.reason, _when(e.added_at), e.added_by)
    console.print(table)
    return 0


async def dnc_import(args: argparse.Namespace, privacy: Privacy, console: Console) -> int:
    report = await privacy.dnc.import_csv(Path(args.file), source=args.source, actor=operator())
    for line, why in report.bad:
        console.print(f"line {line}: {why}")
    console.print(
        f"imported {args.file}: {report.added} added, {report.unchanged} already listed, "
        f"{len(report.bad)} bad rows"
    )
    return 1 if report.bad else 0


async def lookup(args: argparse.Namespace, privacy: Privacy, console: Console) -> int:
    ident = privacy.subjects.parse(args.identifier)
    items = await privacy.subjects.items(ident)
    obj = f"subject:{items[0]['subject_id']}" if items else "subject:none"
    await privacy.audit.record(operator(), "subject.lookup", obj, args.purpose)
    if args.json:
        print(json.dumps(items, indent=2))
        return 0
    if not items:
        console.print("no data about this subject")
        return 0
    for item in items:
        console.print(f"{item['item_type']:<10} {item['item_id']:<24} {item['role']}")
    return 0


def add_parser(sub: Any, console: Console) -> None:
    """`privacy` and its subcommands on the main parser's subparsers."""
    pv = sub.add_parser("privacy", help="keys, audit chain, do-not-call list, subject lookup")
    psub = pv.add_subparsers(dest="privacy_cmd", required=True)

    keys = psub.add_parser("keys", help="master key management").add_subparsers(
        dest="keys_cmd", required=True
    )
    rot = keys.add_parser("rotate", help="re-wrap every data key under a new master key")
    rot.add_argument(
        "--new-passphrase-file", help="passphrase mode: the new passphrase (default: keep it)"
    )
    rot.set_defaults(fn=with_privacy(keys_rotate, console))

    audit = psub.add_parser("audit", help="the audit chain").add_subparsers(
        dest="audit_cmd", required=True
    )
    audit.add_parser("verify", help="check every row's hash link").set_defaults(
        fn=with_privacy(audit_verify, console)
    )

    dnc = psub.add_parser("dnc", help="the do-not-call list").add_subparsers(
        dest="dnc_cmd", required=True
    )
    add = dnc.add_parser("add", help="never call this number")
    add.add_argument("number", help="E.164 (+46…), a national number, or an extension")
    add.add_argument("--source", default="operator", help="where the request came from")
    add.add_argument("--reason", default="", help="why (no personal data)")
    add.set_defaults(fn=with_privacy(dnc_add, console))
    rm = dnc.add_parser("remove", help="allow calls to this number again")
    rm.add_argument("number")
    rm.set_defaults(fn=with_privacy(dnc_remove, console))
    ls = dnc.add_parser("list", help="show the list (audited)")
    ls.add_argument("--json", action="store_true")
    ls.add_argument("--purpose", default="do-not-call administration")
    ls.set_defaults(fn=with_privacy(dnc_list, console))
    imp = dnc.add_parser("import", help="import a CSV with a 'number' column")
    imp.add_argument("file")
    imp.add_argument("--source", default="import", help="source for rows without one")
    imp.set_defaults(fn=with_privacy(dnc_import, console))

    look = psub.add_parser("lookup", help="everything linked to a number or e-mail (audited)")
    look.add_argument("identifier")
    look.add_argument("--json", action="store_true")
    look.add_argument("--purpose", default="data subject request")
    look.set_defaults(fn=with_privacy(lookup, console))

    from appliance.privacy.rights.cli import add_parsers as add_rights_parsers

    add_rights_parsers(psub, lambda fn: with_privacy(fn, console))

    from appliance.privacy.governance_cli import add_parsers as add_governance_parsers

    add_governance_parsers(psub, lambda fn: with_privacy(fn, console), console)

    from appliance.privacy.retention_cli import add_parsers as add_retention_parsers

    add_retention_parsers(psub, lambda fn: with_privacy(fn, console))
