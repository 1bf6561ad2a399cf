from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.cli import main

CONFIG = """
state_dir = "state"
[asterisk]
ami_secret = "x"
[[lines]]
name = "sales"
extension = "300"
"""


def test_leads_and_campaign_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "cv.toml"
    cfg.write_text(CONFIG)
    leads = tmp_path / "l.csv"
    leads.write_text("Mobile,Name,Basis\n+46701000001,Ann,consent\nbad,B,consent\n")
    c = ["--config", str(cfg)]
    assert main([*c, "leads", "import", str(leads), "--list", "spring", "--map", "number=Mobile",
                 "--json"]) == 1  # fmt: skip
    rep = json.loads(capsys.readouterr().out)
    assert (rep["imported"], rep["bad"]) == (
        1, [{"line": 3, "reason": "invalid number: not a phone number"}],
    )  # fmt: skip
    assert main([*c, "campaign", "create", "c1", "--line", "sales", "--list", "spring",
                 "--window", "mon-fri 09:00-17:00", "--max-concurrent", "2"]) == 0  # fmt: skip
    assert main([*c, "campaign", "start", "c1"]) == 0
    assert main([*c, "campaign", "pause", "c1"]) == 0
    assert main([*c, "campaign", "start", "c1"]) == 2  # paused: resume, not start
    assert "cannot go to running" in capsys.readouterr().err
    assert main([*c, "campaign", "resume", "c1"]) == 0
    capsys.readouterr()
    assert main([*c, "campaign", "report", "c1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["state"], report["leads"], report["settings"]["max_concurrent"]) == (
        "running", 1, 2,
    )  # fmt: skip
    assert report["settings"]["block_public_holidays"] is True
    assert main([*c, "campaign", "create", "c3", "--line", "sales", "--list", "spring",
                 "--call-on-holidays"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main([*c, "campaign", "report", "c3"]) == 0
    assert json.loads(capsys.readouterr().out)["settings"]["block_public_holidays"] is False
    out = tmp_path / "r.csv"
    assert main([*c, "campaign", "report", "c1", "--csv", str(out)]) == 0
    assert out.read_text().startswith("attempt,lead,state")
    assert main([*c, "campaign", "create", "c2", "--line", "nope", "--list", "spring"]) == 2
    assert "unknown line 'nope'" in capsys.readouterr().err
