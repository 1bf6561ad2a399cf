"""`callvault leads import|list` and `callvault campaign create|start|pause|resume|stop|status|
report`. Registered by appliance.cli; acts as the OS user who ran it (`cli:<user>`, operator).

The dialling itself runs inside the appliance (appliance.campaign.dialer.Dialler): these commands
change the campaign's state in the database, which the dialler reads on its next pass.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from appliance.campaign.leads import LeadImportError

if TYPE_CHECKING:
    from appliance.privacy import Privacy


def _mapping(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        fld, sep, col = item.partition("=")
        if not sep:
            raise LeadImportError(f"--map {item!r}: expected FIELD=COLUMN (e.g. number=Mobile)")
        out[fld.strip()] = col.strip()
    return out


async def leads_import(args: argparse.Namespace, privacy: Privacy, console: Console) -> int:
    from appliance.campaign.leads import Leads
    from appliance.privacy.cli import operator

    path = Path(args.file)
    try:
        data = await asyncio.to_thread(path.read_bytes)
    except OSError as exc:
        raise LeadImportError(f"cannot read {path}: {exc.strerror or exc}") from None
    rep = await Leads(privacy).import_bytes(
        data, path.name, list_name=args.list, actor=operator(), region=args.region,
        mapping=_mapping(args.map), default_timezone=args.timezone,
    )  # fmt: skip
    if args.json:
        console.print_json(json.dumps(rep.doc()))
    else:
        console.print(
            f"{path}: {rep.rows} row(s): {rep.imported} imported, {rep.unchanged} already on "
            f"list {args.list!r}, {len(rep.bad)} bad"
        )
        for line, reason in rep.bad:
            console.print(f"  line {line}: {reason}")
    return 0 if not rep.bad else 1


async def leads_list(args: argparse.Namespace, privacy: Privacy, console: Console) -> int:
    from appliance.campaign.leads import Leads
    from appliance.privacy.cli import operator

    if args.list is None:
        t = Table("list", "leads", "erased", "created")
        for r in await privacy.db.lead_lists():
            t.add_row(str(r["name"]), str(r["leads"]), str(r["erased"]), str(r["created_by"]))
        console.print(t)
        return 0
    t = Table("id", "number", "name", "basis", "country", "time zone")
    for lead in await Leads(privacy).list_leads(args.list, operator(), args.purpose):
        if isinstance(lead, int):
            t.add_row(str(lead), "[erased]", "", "", "", "")
        else:
            t.add_row(str(lead.id), lead.number, lead.name, lead.basis, lead.country,
                      ",".join(lead.zones))  # fmt: skip
    console.print(t)
    return 0


async def campaign_create(args: argparse.Namespace, privacy: Privacy, console: Console) -> int:
    from appliance.campaign.campaign import Campaigns
    from appliance.campaign.model import Settings
    from appliance.privacy.cli import operator

    doc: dict[str, Any] = {}
    if args.settings:
        doc = json.loads(await asyncio.to_thread(Path(args.settings).read_text))
    if args.window:
        doc["windows"] = args.window
    for key in ("max_attempts", "max_concurrent", "calls_per_minute", "dial"):
        if getattr(args, key) is not None:
            doc[key] = getattr(args, key)
    if args.call_on_holidays:
        doc["block_public_holidays"] = False
    cid = await Campaigns(privacy).create(
        args.name, line=args.line, list_name=args.list, settings=Settings.from_dict(doc),
        actor=operator(),
    )  # fmt: skip
    console.print(f"campaign {cid} ({args.name}) created as a draft; start it to dial")
    return 0


def _action(action: str) -> Any:
    async def run(args: argparse.Namespace, privacy: Privacy, console: Console) -> int:
        from appliance.campaign.campaign import Campaigns
        from appliance.privacy.cli import operator

        state = await Campaigns(privacy).act(args.campaign, action, operator())
        console.print(f"campaign {args.campaign}: {state}")
        return 0

    return run


async def campaign_status(args: argparse.Namespace, privacy: Privacy, console: Console) -> int:
    from appliance.campaign.campaign import Campaigns

    camps = Campaigns(privacy)
    rows = [await camps.get(args.campaign)] if args.campaign else await privacy.db.campaigns()
    t = Table("id", "name", "line", "state", "leads by state")
    for r in rows:
        counts = await privacy.db.campaign_counts(int(r["id"]))
        t.add_row(str(r["id"]), str(r["name"]), str(r["line"]), str(r["state"]),
                  ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))  # fmt: skip
    console.print(t)
    return 0


async def campaign_report(args: argparse.Namespace, privacy: Privacy, console: Console) -> int:
    from appliance.campaign.campaign import Campaigns

    camps = Campaigns(privacy)
    if args.csv:
        text = await camps.report_csv(args.campaign)
        if args.csv == "-":
            print(text, end="")
        else:
            await asyncio.to_thread(Path(args.csv).write_text, text)
        return 0
    console.print_json(json.dumps(await camps.report(args.campaign)))
    return 0


def add_parser(sub: Any, console: Console) -> None:
    from appliance.privacy.cli import with_privacy

    lp = sub.add_parser("leads", help="lead lists for outbound campaigns: import, list")
    lsub = lp.add_subparsers(dest="leads_cmd", required=True)
    im = lsub.add_parser("import", help="import a CSV or XLSX file into a lead list")
    im.add_argument("file")
    im.add_argument("--list", required=True, help="lead list name (created if new)")
    im.add_argument("--map", action="append", default=[], metavar="FIELD=COLUMN",
                    help="column mapping: number, name, email, basis, timezone")  # fmt: skip
    im.add_argument("--region", help="country numbers without +CC are read in (default: config)")
    im.add_argument("--timezone", help="time zone for numbers phonenumbers cannot place")
    im.add_argument("--json", action="store_true")
    im.set_defaults(fn=with_privacy(leads_import, console))
    ls = lsub.add_parser("list", help="lead lists, or one list's leads (decrypted, audited)")
    ls.add_argument("list", nargs="?")
    ls.add_argument("--purpose", default="campaign administration")
    ls.set_defaults(fn=with_privacy(leads_list, console))

    cp = sub.add_parser("campaign", help="outbound campaigns: create, start/pause/stop, report")
    csub = cp.add_subparsers(dest="campaign_cmd", required=True)
    cr = csub.add_parser("create", help="create a campaign (a draft) over a lead list")
    cr.add_argument("name")
    cr.add_argument("--line", required=True)
    cr.add_argument("--list", required=True)
    cr.add_argument("--window", action="append", help="'mon-fri 09:00-18:00' (repeatable)")
    cr.add_argument("--max-attempts", type=int)
    cr.add_argument("--max-concurrent", type=int)
    cr.add_argument("--calls-per-minute", type=int)
    cr.add_argument("--dial", help="channel template, e.g. 'PJSIP/{digits}@trunk'")
    cr.add_argument("--call-on-holidays", action="store_true",
                    help="treat the leads' countries' public holidays as ordinary days "
                         "(only where the law allows calls on them)")  # fmt: skip
    cr.add_argument("--settings", help="JSON file with any of the campaign settings")
    cr.set_defaults(fn=with_privacy(campaign_create, console))
    for action in ("start", "pause", "resume", "stop"):
        a = csub.add_parser(action, help=f"{action} a campaign")
        a.add_argument("campaign", help="name or id")
        a.set_defaults(fn=with_privacy(_action(action), console))
    st = csub.add_parser("status", help="campaigns and their leads by state")
    st.add_argument("campaign", nargs="?")
    st.set_defaults(fn=with_privacy(campaign_status, console))
    rp = csub.add_parser("report", help="counts, conversion, minutes, outcomes over time")
    rp.add_argument("campaign")
    rp.add_argument("--csv", metavar="FILE", help="write the attempts as CSV ('-': stdout)")
    rp.set_defaults(fn=with_privacy(campaign_report, console))
