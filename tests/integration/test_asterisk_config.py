"""The rendered config against the real Asterisk: every module loads, every app exists."""

from __future__ import annotations

import re

import pytest

from appliance.config import Config
from appliance.telephony import render
from tests.integration.conftest import sandbox

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_every_module_we_list_is_running(cfg: Config) -> None:
    out = sandbox(cfg, "cli", "module show").stdout
    loaded = set(re.findall(r"^(\S+\.so)\s", out, re.MULTILINE))
    missing = [m for m in render.MODULES if m not in loaded]
    assert not missing, f"modules that did not load: {missing}"


async def test_every_dialplan_application_exists(cfg: Config) -> None:
    dialplan = render.render(cfg)["extensions.conf"]
    apps = set(re.findall(r"^\s*(?:exten => [^,]+|same => )[^,]*,(\w+)\(", dialplan, re.MULTILINE))
    assert {"Dial", "MixMonitor", "Set", "Playback", "Return"} <= apps
    for app in sorted(apps):
        out = sandbox(cfg, "cli", f"core show application {app}", check=False).stdout
        assert "Synopsis" in out or "SYNOPSIS" in out, f"dialplan uses {app}, not loaded"


async def test_sandbox_status_and_cli(cfg: Config) -> None:
    status = sandbox(cfg, "status")
    assert status.stdout.startswith("running pid=")
    version = sandbox(cfg, "cli", "core show version").stdout
    assert "Asterisk 22" in version
    # AMI and SIP listen on loopback only.
    settings = sandbox(cfg, "cli", "manager show settings").stdout
    assert "127.0.0.1:5038" in settings.replace(" ", "")
