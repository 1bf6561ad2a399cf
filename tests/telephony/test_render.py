from pathlib import Path

import pytest

from appliance import config
from appliance.errors import ConfigError
from appliance.telephony import render


@pytest.fixture
def cfg(tmp_path: Path) -> config.Config:
    raw = {
        "state_dir": "state",
        "asterisk": {"root": str(tmp_path / "root"), "sandbox": True},
        "lines": [
            {"name": "reception", "extension": "100", "record_legs": ["caller", "callee", "mixed"]},
            {"name": "quiet", "extension": "101", "record_legs": []},
            {"name": "asks", "extension": "102", "recording": "after-consent"},
            {"name": "echo", "extension": "900", "kind": "echo", "record_legs": ["caller"]},
        ],
        "extensions": [{"number": "201", "name": "Front desk"}],
        "ip_peers": [{"name": "loadgen", "match": "127.0.0.2"}],
    }
    return config.parse(raw, base_dir=tmp_path)


def test_renders_every_file(cfg: config.Config) -> None:
    files = render.render(cfg)
    assert set(files) >= {
        "pjsip.conf",
        "extensions.conf",
        "manager.conf",
        "modules.conf",
        "cdr.conf",
        "cdr_manager.conf",
        "cdr_custom.conf",
        "logger.conf",
        "asterisk.conf",
    }
    assert "autoload = no" in files["modules.conf"]
    assert "load = app_mixmonitor.so" in files["modules.conf"]
    assert f"secret = {cfg.ami_secret()}" in files["manager.conf"]
    assert "bindaddr = 127.0.0.1" in files["manager.conf"]


def test_lines_record_the_legs_they_ask_for(cfg: config.Config) -> None:
    dialplan = render.render(cfg)["extensions.conf"]
    rec = [ln for ln in dialplan.splitlines() if "MixMonitor(" in ln]
    assert len(rec) == 2  # the quiet line records nothing, the consent line not from the start
    assert "reception-mixed.wav,r(" in rec[0] and "reception-callee.wav)" in rec[0]
    # caller-only: no mixed main file, just r()
    assert (
        "MixMonitor(,r(/var/spool/asterisk/monitor/cv-${CHANNEL(linkedid)}-echo-caller.wav))"
        in rec[1]
    )
    assert "Dial(PJSIP/agent,30,b(callvault-agent-headers^s^1(reception)))" in dialplan


def test_endpoints_generated_with_secrets(cfg: config.Config) -> None:
    pjsip = render.render(cfg)["pjsip.conf"]
    assert "[201]" in pjsip
    assert f"password = {cfg.extension_password(cfg.extensions[0])}" in pjsip
    assert f"password = {cfg.agent_password()}" in pjsip
    assert "match = 127.0.0.2" in pjsip
    assert "bind = 127.0.0.1:5060" in pjsip


def test_cdr_file_format_matches_parser(cfg: config.Config) -> None:
    mapping = render.render(cfg)["cdr_custom.conf"].splitlines()[-1]
    assert mapping.count("CSV_QUOTE") == len(render.CDR_CSV_FIELDS)
    assert "${CDR(start,u)}" in mapping


def test_write_is_complete_and_private(cfg: config.Config) -> None:
    target = render.write(cfg, render.render(cfg))
    assert (target / render.MARKER).exists()
    assert (target / "manager.conf").stat().st_mode & 0o777 == 0o640
    assert not list(target.glob(".*.tmp"))


def test_bad_caller_id_name_rejected_before_writing(tmp_path: Path) -> None:
    raw = {
        "state_dir": "s",
        "asterisk": {"root": str(tmp_path / "root")},
        "extensions": [{"number": "201", "name": 'Evil"\n[x]'}],
    }
    cfg = config.parse(raw, base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"extensions\[0\]\.name"):
        render.render(cfg)
    assert not (tmp_path / "root" / "etc").exists()
