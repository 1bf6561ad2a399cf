"""`callvault privacy request …` and `callvault privacy hold …` (registered by privacy.cli)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich.console import Console

from appliance.errors import CallvaultError

if TYPE_CHECKING:
    from appliance.privacy import Privacy
    from appliance.privacy.rights import Rights, RightsRequest

KINDS = ("access", "erasure", "rectification", "restriction", "objection")


def _rights(privacy: Privacy) -> Rights:
    from appliance.privacy.rights import Rights

    return Rights(privacy)


def _show(req: RightsRequest, console: Console, as_json: bool) -> None:
    if as_json:
        print(json.dumps(asdict(req), indent=2, default=str))
        return
    due = datetime.fromtimestamp(req.due_at, UTC).strftime("%Y-%m-%d")
    console.print(f"request {req.id}: {req.kind.value} {req.status.value}, due {due}")
    if req.refused_reason:
        console.print(f"refused: {req.refused_reason}")
    if req.response:
        console.print(json.dumps(req.response, indent=2))
    if req.export_path:
        console.print(f"export: {req.export_path}")


def _params(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise CallvaultError(f"--param {pair!r}: expected KEY=VALUE")
        out[key.strip()] = value
    return out


async def create(args: argparse.Namespace, privacy: Privacy, console: Console) -> int:
    from appliance.privacy.cli import operator

    req = await _rights(privacy).create(
        args.kind,
        args.identifier,
        operator(),
        channel=args.channel,
        params=_params(args.param) or None,
    )
    _show(req, console, args.json)
    return 0


async def attest(args: argparse.Namespace, privacy: Privacy, console: Console) -> int:
    from appliance.privacy.cli import operator

    _show(await _rights(privacy).attest(args.id, operator(), args.note), console, False)
    return 0


async def process(args: argparse.Namespace, privacy: Privacy, console: Console) -> int:
    from appliance.privacy.cli import operator

    _show(await _rights(privacy).process(args.id, operator()), console, args.json)
    return 0


async def extend(args: argparse.Namespace, privacy: Privacy, console: Console) -> int:
    from appliance.privacy.cli import operator

    _show(await _rights(privacy).extend(args.id, args.reason, operator()), console, False)
    return 0


async def refuse(args: argparse.Namespace, privacy: Privacy, console: Console) -> int:
    from appliance.privacy.cli import operator

    _show(await _rights(privacy).refuse(args.id, args.reason, operator()), console, False)
    return 0


async def forward(args: argparse.Namespace, privacy: Privacy, console: Console) -> int:
    from appliance.privacy.cli import operator

    req = await _rights(privacy).forward(
        args.id, args.to, args.note, operator(), export=not args.no_export
    )
    _show(req, console, False)
    return 0


async def show(args: argparse.Namespace, privacy: Privacy, console: Console) -> int:
    rights = _rights(privacy)
    _show(await rights.get(args.id), console, args.json)
    for e in await rights.log(args.id):
        console.print(f"  {e['step']:<14} {e['outcome']:<6} {e['message']}")
    return 0


async def listing(args: argparse.Namespace, privacy: Privacy, console: Console) -> int:
    rights = _rights(privacy)
    reqs = await rights.overdue() if args.overdue else await rights.all(open_only=args.open)
    if args.json:
        print(json.dumps([asdict(r) for r in reqs], indent=2, default=str))
        return 0
    for r in reqs:
        _show(r, console, False)
    if args.overdue and reqs:
        return 1  # a timer can alert on it
    return 0


async def hold_add(args: argparse.Namespace, privacy: Privacy, console: Console) -> int:
    from appliance.privacy.cli import operator

    holds = _rights(privacy).holds
    expires = (
        datetime.strptime(args.expires, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
        if args.expires
        else None
    )
    common: dict[str, Any] = {"reason": args.reason, "owner": args.owner, "expires_at": expires}
    if args.subject:
        hid = await holds.on_subject(privacy.subjects.parse(args.subject), operator(), **common)
    else:
        hid = await holds.on_calls(args.call, operator(), case_ref=args.case, **common)
    console.print(f"legal hold #{hid} placed")
    return 0


async def hold_release(args: argparse.Namespace, privacy: Privacy, console: Console) -> int:
    from appliance.privacy.cli import operator

    await _rights(privacy).holds.release(args.id, operator())
    console.print(f"legal hold #{args.id} released")
    return 0


async def hold_list(args: argparse.Namespace, privacy: Privacy, console: Console) -> int:
    for h in await _rights(privacy).holds.all(active=args.active):
        console.print(h.describe() + (" [released]" if h.released_at else ""))
    return 0


def add_parsers(psub: Any, wrap: Any) -> None:
    """`request` and `hold` under `privacy`; `wrap(handler)` opens the database for it."""
    req = psub.add_parser("request", help="data subject rights requests (Art. 15-21)")
    rs = req.add_subparsers(dest="request_cmd", required=True)
    c = rs.add_parser("create", help="record a request (identity not yet verified)")
    c.add_argument("kind", choices=KINDS)
    c.add_argument("identifier", help="the subject's number or e-mail")
    c.add_argument("--channel", default="cli", help="how it arrived: cli, phone, email, letter")
    c.add_argument("--param", action="append", default=[], help="KEY=VALUE (rectification)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(fn=wrap(create))
    a = rs.add_parser("attest", help="attest the requester's identity")
    a.add_argument("id", type=int)
    a.add_argument("--note", required=True, help="how the identity was checked")
    a.set_defaults(fn=wrap(attest))
    p = rs.add_parser("process", help="run (or resume) a verified request")
    p.add_argument("id", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=wrap(process))
    e = rs.add_parser("extend", help="extend the deadline by two months (once)")
    e.add_argument("id", type=int)
    e.add_argument("--reason", required=True)
    e.set_defaults(fn=wrap(extend))
    r = rs.add_parser("refuse", help="refuse with a reason")
    r.add_argument("id", type=int)
    r.add_argument("--reason", required=True)
    r.set_defaults(fn=wrap(refuse))

    f = rs.add_parser("forward", help="hand to the controller whose data it concerns")
    f.add_argument("id", type=int)
    f.add_argument("--to", required=True, help="the controller (organisation) it goes to")
    f.add_argument("--note", required=True, help="why it is theirs to answer")
    f.add_argument("--no-export", action="store_true", help="do not attach an access export")
    f.set_defaults(fn=wrap(forward))
    s = rs.add_parser("show", help="a request and its execution log")
    s.add_argument("id", type=int)
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=wrap(show))
    ls = rs.add_parser("list", help="requests (exit 1 with --overdue when any are)")
    ls.add_argument("--open", action="store_true")
    ls.add_argument("--overdue", action="store_true")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(fn=wrap(listing))
    _hold_parsers(psub, wrap)


def _hold_parsers(psub: Any, wrap: Any) -> None:
    hold = psub.add_parser("hold", help="legal holds").add_subparsers(
        dest="hold_cmd", required=True
    )
    h = hold.add_parser("add", help="keep a subject's data or calls beyond retention/erasure")
    target = h.add_mutually_exclusive_group(required=True)
    target.add_argument("--subject", help="number or e-mail")
    target.add_argument("--call", action="append", help="call id (repeat for a case)")
    h.add_argument("--case", default="", help="case reference for several calls")
    h.add_argument("--reason", required=True)
    h.add_argument("--owner", required=True)
    h.add_argument("--expires", help="YYYY-MM-DD (UTC)")
    h.set_defaults(fn=wrap(hold_add))
    hr = hold.add_parser("release", help="end a hold")
    hr.add_argument("id", type=int)
    hr.set_defaults(fn=wrap(hold_release))
    hl = hold.add_parser("list", help="holds")
    hl.add_argument("--active", action="store_true")
    hl.set_defaults(fn=wrap(hold_list))
