from __future__ import annotations

import io
import random

import openpyxl
import pytest

from appliance.campaign.leads import LeadImportError, Leads
from appliance.privacy import Privacy
from appliance.privacy.audit import Actor
from appliance.privacy.identifiers import Identifier
from appliance.privacy.keyring import KeyShreddedError

OP = Actor("op", "operator")


def num(i: int) -> str:
    return f"+4670{1000000 + i:07d}"


async def test_import_reports_every_bad_row_and_reimport_changes_nothing(privacy: Privacy) -> None:
    await privacy.dnc.add("+46701999999", source="test", reason="", actor=OP)
    csv_text = (
        b"Phone,Name,Consent,Company\n"
        b"070-100 00 01,Ann,consent,Acme\n"  # line 2: national format, read in SE
        b"not a number,Bob,consent,X\n"  # 3
        b"+46701000003,,,X\n"  # 4: no basis
        b"+46701000001,Ann again,consent,Acme\n"  # 5: duplicate of line 2
        b"+46701999999,Dnc,consent,X\n"  # 6
        b"\n"  # blank: not a row
        b"+46701000007,Eve,legitimate-interest,Y,extra\n"  # 8: too many fields
        b"+46701000009,Ida,contract,Z\n"  # 9
        b"+4612,Short,consent,Z\n"  # 10
        b"+46701000011,Mia,maybe,Z\n"  # 11
    )
    leads = Leads(privacy)
    rep = await leads.import_bytes(csv_text, "a.csv", list_name="spring", actor=OP)
    assert rep.rows == 9
    assert rep.imported == 2
    assert rep.bad == [
        (3, "invalid number: not a phone number"),
        (4, "missing consent basis"),
        (5, "duplicate of line 2"),
        (6, "on the do-not-call list"),
        (8, "more fields than the header has"),
        (10, "invalid number: not valid (read in region SE)"),
        (11, "unknown consent basis (one of consent, contract, legal-obligation, "
             "vital-interests, public-task, legitimate-interest)"),
    ]  # fmt: skip
    assert rep.imported + rep.unchanged + len(rep.bad) == rep.rows
    again = await leads.import_bytes(csv_text, "a.csv", list_name="spring", actor=OP)
    assert (again.imported, again.unchanged, again.bad) == (0, 2, rep.bad)
    got = await leads.list_leads("spring", OP, "test")
    opened = [x for x in got if not isinstance(x, int)]
    assert [(x.number, x.name, x.basis, x.zones, x.extra) for x in opened] == [
        ("+46701000001", "Ann", "consent", ("Europe/Stockholm",), {"Company": "Acme"}),
        ("+46701000009", "Ida", "contract", ("Europe/Stockholm",), {"Company": "Z"}),
    ]  # fmt: skip
    # Personal fields are sealed: the number is nowhere in the database file in the clear.
    await privacy.db.checkpoint()
    assert b"+46701000009" not in privacy.cfg.database.read_bytes()
    assert b"Ida" not in privacy.cfg.database.read_bytes()


async def test_mapping_and_missing_columns(privacy: Privacy) -> None:
    leads = Leads(privacy)
    data = b"tel;who;why;tz\n+14155550123;Al;consent;America/Los_Angeles\n"
    rep = await leads.import_bytes(
        data, "m.csv", list_name="us", actor=OP, mapping={"name": "who", "basis": "why"}
    )
    assert (rep.imported, rep.bad) == (1, [])
    (lead,) = await leads.list_leads("us", OP, "test")
    assert not isinstance(lead, int)
    assert (lead.number, lead.name, lead.country, lead.zones) == (
        "+14155550123", "Al", "US", ("America/Los_Angeles",),
    )  # fmt: skip
    with pytest.raises(LeadImportError, match="no consent basis column"):
        await leads.import_bytes(b"phone\n+46701000001\n", "x.csv", list_name="x", actor=OP)
    with pytest.raises(LeadImportError, match="mapping name='nope': no such column"):
        await leads.import_bytes(data, "x.csv", list_name="x", actor=OP, mapping={"name": "nope"})


async def test_xlsx_import(privacy: Privacy) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["Mobile", "Name", "Basis"])
    sheet.append([46701000001, "Ann", "consent"])  # a number cell, as spreadsheets keep them
    sheet.append(["+46701000002", "Bo", None])
    sheet.append(["+46701000001", "Ann", "consent"])
    buf = io.BytesIO()
    book.save(buf)
    rep = await Leads(privacy).import_bytes(buf.getvalue(), "l.xlsx", list_name="x", actor=OP)
    assert (rep.rows, rep.imported, rep.bad) == (
        3, 1, [(3, "missing consent basis"), (4, "duplicate of line 2")],
    )  # fmt: skip


async def test_erasing_the_subject_shreds_the_lead(privacy: Privacy) -> None:
    from appliance.privacy.rights.service import Rights

    leads = Leads(privacy)
    await leads.import_bytes(
        b"phone,name,basis\n+46701000001,Ann,consent\n", "a.csv", list_name="l", actor=OP
    )
    items = await privacy.subjects.items(Identifier("phone", "+46701000001"))
    assert [(i["item_type"], i["role"]) for i in items] == [("lead", "lead")]
    rights = Rights(privacy)
    admin = Actor("admin", "admin")
    req = await rights.create("erasure", "+46701000001", admin, channel="cli")
    await rights.attest(req.id, admin, "test")
    await rights.process(req.id, admin)
    (row,) = await privacy.db.leads(1)
    with pytest.raises(KeyShreddedError):
        await leads.open_lead(row)
    assert await leads.list_leads("l", OP, "test") == [int(row["id"])]


async def test_10k_rows_with_malformed_ones(privacy: Privacy) -> None:
    rnd = random.Random(8)
    lines = ["phone,name,consent"]
    expected: list[tuple[int, str]] = []
    first: dict[str, int] = {}  # number -> the line it was first imported from
    for i in range(10_000):
        line = i + 2
        kind = rnd.random()
        if kind < 0.03:
            lines.append(f"12ab{i},N{i},consent")
            expected.append((line, "invalid number: not a phone number"))
        elif kind < 0.06:
            lines.append(f"{num(i)},N{i},")
            expected.append((line, "missing consent basis"))
        elif kind < 0.08 and first:
            again = rnd.choice(sorted(first))
            lines.append(f"{again},D{i},consent")
            expected.append((line, f"duplicate of line {first[again]}"))
        else:
            lines.append(f"{num(i)},N{i},{rnd.choice(['consent', 'contract'])}")
            first[num(i)] = line
    good = len(first)
    data = ("\n".join(lines) + "\n").encode()
    rep = await Leads(privacy).import_bytes(data, "big.csv", list_name="big", actor=OP)
    assert rep.rows == 10_000
    assert rep.bad == expected
    assert rep.imported == good
    assert len(await privacy.db.leads(1, limit=20_000)) == good
