"""`callvault doctor` against the session's real Asterisk: AMI login, version, every module
the rendered config loads, a SIP OPTIONS answered by a real SIP stack, and the time Asterisk
takes to answer a test call to the echo line."""

from __future__ import annotations

import time
from dataclasses import replace

from rich.console import Console

from appliance.config import Config, IpPeerConfig
from appliance.maint import doctor


async def test_doctor_against_the_sandbox(cfg: Config) -> None:
    # Asterisk itself as the "trunk": it answers OPTIONS like any SIP peer.
    here = replace(cfg, ip_peers=(IpPeerConfig(name="self", match=cfg.asterisk.sip_bind),))
    t0 = time.monotonic()
    report = await doctor.run(here)
    elapsed = time.monotonic() - t0
    doctor.print_report(report, Console(width=160))  # in the log of a failing run
    by = {f.check: f for f in report.findings}
    for check in ("AMI login", "version", "modules", "self OPTIONS"):
        assert by[check].status == "pass", by[check]
    assert by["version"].detail.startswith("22.")
    assert by["modules"].detail.startswith("all ")
    assert by["self OPTIONS"].detail.startswith(f"{cfg.asterisk.sip_bind}: SIP/2.0 ")
    call = next(f for f in report.findings if f.check.startswith("test call to 900"))
    assert call.status == "pass", call
    ms = float(call.detail.removeprefix("answered in ").removesuffix(" ms"))
    assert 0 < ms < 2000
    # Every check the issue names is there, each with a result.
    areas = {f.area for f in report.findings}
    assert {"database", "asterisk", "trunks", "host", "models", "admin", "calls"} <= areas
    assert report.exit_code in (0, 1, 3)
    assert elapsed < 30


async def test_doctor_reports_a_wrong_ami_secret(cfg: Config) -> None:
    wrong = replace(cfg, asterisk=replace(cfg.asterisk, ami_secret="not-the-secret"))
    report = await doctor.run(wrong, call=False)
    login = next(f for f in report.findings if f.check == "AMI login")
    assert login.status == "fail" and "failed" in login.detail
    assert report.exit_code == 1
