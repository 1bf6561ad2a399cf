"""The do-not-call list: add/remove/list, CSV import report, enforcement at originate."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from appliance.privacy import Actor, IdentifierError, Privacy
from appliance.privacy.dnc import DncError
from appliance.telephony.service import DoNotCallError, TelephonyService

OP = Actor("op", "operator")
REPO = Path(__file__).resolve().parents[2]


def audit_actions(privacy: Privacy) -> list[str]:
    con = sqlite3.connect(privacy.cfg.database)
    return [r[0] for r in con.execute("SELECT action FROM audit_log ORDER BY seq")]


async def test_add_list_remove(privacy: Privacy) -> None:
    assert await privacy.dnc.add("070-123 45 67", source="phone call", reason="asked", actor=OP)
    assert not await privacy.dnc.add("+46701234567", source="x", reason="", actor=OP)
    [entry] = await privacy.dnc.entries()
    assert (entry.number, entry.source, entry.added_by) == ("+46701234567", "phone call", "op")
    with pytest.raises(IdentifierError):
        await privacy.dnc.add("12", source="x", reason="", actor=OP)
    assert await privacy.dnc.remove("+46 70 123 45 67", actor=OP)
    assert not await privacy.dnc.remove("+46 70 123 45 67", actor=OP)
    assert await privacy.dnc.entries() == []
    assert audit_actions(privacy) == ["dnc.add", "dnc.remove"]
    assert (await privacy.audit.verify()).ok


CSV = """number,source,reason
+46701234567,crm,opted out
070-765 43 21,,
not-a-number,crm,
+46701234567,crm,duplicate in the file
202,desk,internal
12,,too short
+46701112233,crm,x,extra
"""


async def test_csv_import_reports_bad_rows_and_reimport_changes_nothing(
    privacy: Privacy, tmp_path: Path
) -> None:
    f = tmp_path / "dnc.csv"
    f.write_text(CSV)
    report = await privacy.dnc.import_csv(f, source="import", actor=OP)
    assert report.added == 3
    assert report.unchanged == 1
    assert [line for line, _ in report.bad] == [4, 7, 8]
    assert "not a phone number" in report.bad[0][1]
    assert "more fields" in report.bad[2][1]
    numbers = {e.number: e for e in await privacy.dnc.entries()}
    assert set(numbers) == {"+46701234567", "+46707654321", "202"}
    assert numbers["+46707654321"].source == "import"  # the default for rows without one
    before = sqlite3.connect(privacy.cfg.database).execute("SELECT * FROM dnc").fetchall()
    again = await privacy.dnc.import_csv(f, source="import", actor=OP)
    assert (again.added, again.unchanged, len(again.bad)) == (0, 4, 3)
    after = sqlite3.connect(privacy.cfg.database).execute("SELECT * FROM dnc").fetchall()
    assert after == before
    assert audit_actions(privacy) == ["dnc.import"]  # the no-op re-import wrote nothing


@pytest.mark.parametrize(
    ("content", "match"),
    [(b"phone\n+46701234567\n", "'number' column"), (b"number\n\xff\xfe\n", "not UTF-8")],
)
async def test_an_unusable_file_changes_nothing(
    privacy: Privacy, tmp_path: Path, content: bytes, match: str
) -> None:
    f = tmp_path / "bad.csv"
    f.write_bytes(content)
    with pytest.raises(DncError, match=match):
        await privacy.dnc.import_csv(f, source="import", actor=OP)
    with pytest.raises(DncError, match="cannot read"):
        await privacy.dnc.import_csv(tmp_path / "missing.csv", source="import", actor=OP)
    assert await privacy.dnc.entries() == []


async def test_originate_refuses_a_dnc_number_before_any_ami_action(privacy: Privacy) -> None:
    svc = TelephonyService(privacy.cfg, privacy.db, privacy)
    sent: list[tuple[str, dict[str, Any]]] = []

    async def action(name: str, **kw: Any) -> None:
        sent.append((name, kw))

    svc.ami.action = action  # type: ignore[method-assign,assignment]
    await privacy.dnc.add("202", source="desk", reason="test", actor=OP)
    with pytest.raises(DoNotCallError, match=r"on the do-not-call list \(entry 1, source 'desk'"):
        await svc.originate("202", "reception", actor=Actor("bob", "operator"))
    assert sent == []
    assert audit_actions(privacy)[-1] == "originate.refused"
    await svc.originate("201", "reception")
    assert [name for name, _ in sent] == ["Originate"]


def cli(config: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance.cli", "--config", str(config), "privacy", *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )


def test_cli(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        'state_dir = "state"\n[[lines]]\nname = "reception"\nextension = "100"\n'
        '[[extensions]]\nnumber = "202"\nname = "x"\n'
    )
    assert cli(config, "dnc", "add", "+46701234567", "--source", "letter").returncode == 0
    out = cli(config, "dnc", "list", "--json")
    assert out.returncode == 0 and '"+46701234567"' in out.stdout
    bad = cli(config, "dnc", "add", "nonsense")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "'nonsense' is not a phone number" in bad.stderr
    csv_file = tmp_path / "in.csv"
    csv_file.write_text("number\n202\nbad\n")
    imp = cli(config, "dnc", "import", str(csv_file))
    assert imp.returncode == 1 and "line 3:" in imp.stdout and "1 added" in imp.stdout
    assert cli(config, "dnc", "remove", "202").returncode == 0
    assert cli(config, "dnc", "remove", "202").returncode == 2
    ok = cli(config, "audit", "verify")
    assert ok.returncode == 0 and "audit chain OK" in ok.stdout
    rot = cli(config, "keys", "rotate")
    assert rot.returncode == 0 and "re-wrapped" in rot.stdout
    assert '"+46701234567"' in cli(config, "dnc", "list", "--json").stdout
    con = sqlite3.connect(tmp_path / "state" / "callvault.db")
    con.execute("DROP TRIGGER audit_log_no_update")
    con.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
    con.commit()
    broken = cli(config, "audit", "verify")
    assert broken.returncode == 2
    assert "audit chain broken at row 2: hash does not match" in broken.stderr
