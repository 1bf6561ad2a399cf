"""`callvault support-bundle`: logs, config, versions and doctor output, scanned afterwards
for every phone number, name, e-mail and secret of the seeded test data — none may be left."""

from __future__ import annotations

import json
import re
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from appliance import cli
from appliance import config as config_mod
from appliance.maint import bundle
from appliance.store import Database
from tests.store.test_db import CDR

# The seeded personal data and secrets, in the forms they take in logs.
CALLERS = [
    ("+46701234567", "Astrid Lindqvist", ["0701234567", "070-123 45 67", "0046701234567"]),
    ("+4930123456789", "Jürgen Weißmüller", ["004930123456789", "+49 30 123456789"]),
    ("+447911123456", "Siobhan O'Reilly", ["07911 123456", "447911123456"]),
]
DESK_NAMES = ["Margareta Pettersson", "Olof Nilsson"]
SECRETS = ["Ami-S3cret-xq9Zt", "Desk-Pw-77Rk2", "Agent-Pw-4hN8m"]
EMAIL = "astrid.lindqvist@example.se"


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "callvault.toml"
    path.write_text(
        f"""state_dir = "state"
[asterisk]
root = "{tmp_path / "rootfs"}"
ami_port = 1
ami_secret = "{SECRETS[0]}"
[agent]
password = "{SECRETS[2]}"
[[lines]]
name = "reception"
extension = "100"
[[extensions]]
number = "201"
name = "{DESK_NAMES[0]}"
password = "{SECRETS[1]}"
[[extensions]]
number = "202"
name = "{DESK_NAMES[1]}"
"""
    )
    return path


def _asterisk_log() -> str:
    lines = []
    for e164, name, forms in CALLERS:
        lines += [
            f"[2026-11-23 10:00:01] VERBOSE[123] pbx.c: Executing [100@callvault-inbound:1] "
            f'NoOp("PJSIP/trunk-0001", "callvault line reception") from "{name}" <sip:{e164}@'
            "10.0.0.1>",
            f"[2026-11-23 10:00:02] NOTICE[124] res_pjsip: CallerIDName: {name}, CallerIDNum: "
            f"{forms[0]}",
            *(
                f"[2026-11-23 10:00:03] VERBOSE[125] app_dial.c: dialling {f} for {name}"
                for f in forms
            ),
            f"[2026-11-23 10:00:04] WARNING[126] transfer requested by {name} to {e164}",
        ]
    lines += [
        f"[2026-11-23 10:01:00] NOTICE[127] manager.c: login secret={SECRETS[0]} refused",
        f"[2026-11-23 10:01:01] NOTICE[128] res_pjsip: 201 auth with {SECRETS[1]} ok",
        f"[2026-11-23 10:01:02] VERBOSE[129] mail to {EMAIL} queued",
        f"[2026-11-23 10:01:03] VERBOSE[130] {DESK_NAMES[0]} picked up; {DESK_NAMES[1]} busy",
    ]
    return "\n".join(lines) + "\n"


async def _seed(tmp_path: Path) -> config_mod.Config:
    cfg = config_mod.load(_config(tmp_path))
    logs = cfg.asterisk.host_path("/var/log/asterisk")
    (logs / "cdr-custom").mkdir(parents=True)
    (logs / "messages").write_text(_asterisk_log())
    (logs / "cdr-custom" / "callvault.csv").write_text(f'"{CALLERS[0][0]}","{CALLERS[0][1]}"\n')
    async with Database(cfg.database) as db:
        for i, (e164, name, _forms) in enumerate(CALLERS):
            cid = f"200.{i}"
            cdr = replace(CDR, call_id=cid, uniqueid=cid, calling_number=e164, caller_name=name)
            await db.add_cdr(cdr)
    return cfg


def _needles() -> list[str]:
    out = [EMAIL, *DESK_NAMES, *SECRETS]
    for e164, name, forms in CALLERS:
        out += [e164, name, *name.split(), *forms]
    return out


def _scan(archive: Path) -> tuple[list[str], dict[str, str]]:
    members: dict[str, str] = {}
    with tarfile.open(archive) as tar:
        for m in tar.getmembers():
            fh = tar.extractfile(m)
            assert fh is not None
            members[m.name] = fh.read().decode()
    hits = []
    for name, body in members.items():
        # Numbers also as digits only: one cut by spaces, dashes or brackets is still one.
        squeezed = [re.sub(r"[\s()-]", "", line) for line in body.splitlines()]
        for needle in _needles():
            if needle.lower() in body.lower():
                hits.append(f"{name}: {needle!r}")
            digits = re.sub(r"\D", "", needle)
            if len(digits) >= 7 and any(digits[-9:] in line for line in squeezed):
                hits.append(f"{name}: digits of {needle!r}")
    return hits, members


async def test_bundle_holds_no_number_name_or_secret(tmp_path: Path) -> None:
    cfg = await _seed(tmp_path)
    made = await bundle.create(cfg, tmp_path / "out" / "support.tar.gz")
    assert made.path.stat().st_mode & 0o777 == 0o600
    hits, members = _scan(made.path)
    assert hits == []
    names = {n.removeprefix("callvault-support/") for n in members}
    assert {"versions.json", "doctor.json", "doctor.txt", "config.json"} <= names
    assert "logs/asterisk/messages" in names
    assert not any("cdr-custom" in n for n in names)  # call records are not diagnostics
    conf = json.loads(members["callvault-support/config.json"])
    assert conf["asterisk"]["ami_secret"] == "<secret removed>"
    assert conf["lines"][0]["extension"] == "100"  # the config stays useful
    log = members["callvault-support/logs/asterisk/messages"]
    assert "NOTICE[124] res_pjsip: CallerIDName: <redacted>" in log
    assert "[2026-11-23 10:00:01]" in log  # timestamps survive the number patterns
    versions = json.loads(members["callvault-support/versions.json"])
    assert versions["callvault"] and versions["python"]
    assert made.scrubbed > 20


def test_a_leak_stops_the_bundle() -> None:
    s = bundle.Scrubber("SE", ["Astrid Lindqvist"])
    assert s.scrub("from Astrid Lindqvist") == "from <redacted>"
    assert s.leaks("ASTRID LINDQVIST called") == ["Astrid Lindqvist"]


def test_cli_writes_the_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    asyncio.run(_seed(tmp_path))
    out = tmp_path / "b.tar.gz"
    assert (
        cli.main(["--config", str(tmp_path / "callvault.toml"), "support-bundle", "-o", str(out)])
        == 0
    )
    assert "values scrubbed" in capsys.readouterr().out
    assert _scan(out)[0] == []
