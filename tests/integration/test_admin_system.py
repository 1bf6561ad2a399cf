"""The system page's Asterisk status against the real Asterisk sandbox: AMI login, version,
the PJSIP endpoints the appliance rendered (desk phones, the agent) and their registrations."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from appliance.admin import status
from appliance.config import Config


async def test_asterisk_status_from_the_sandbox(cfg: Config) -> None:
    # Just after `sandbox up` Asterisk may still be booting (AMI answers, PJSIP actions are
    # refused): a status a few seconds later is the one a person sees.
    deadline = time.monotonic() + 20
    while True:
        st = await status.asterisk_status(cfg, timeout_s=5.0)
        if (st.reachable and st.endpoints) or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    assert st.reachable, st.error
    assert st.endpoints, st.endpoints_error
    assert st.version.startswith(("22", "21", "20")), st.version
    assert st.up_since and st.active_calls is not None
    names = {e.name: e for e in st.endpoints}
    # Every configured desk phone and the agent are PJSIP endpoints, labelled from the config.
    for ext in cfg.extensions:
        assert names[ext.number].kind == "extension"
        assert names[ext.number].label == ext.name
    assert names[cfg.agent.username].kind == "agent"
    assert all(e.device_state for e in st.endpoints)


async def test_wrong_ami_secret_is_a_clear_unreachable_state(cfg: Config) -> None:
    wrong = replace(cfg, asterisk=replace(cfg.asterisk, ami_secret="not-the-secret"))
    st = await status.asterisk_status(wrong)
    assert not st.reachable
    assert "Authentication failed" in st.error or "failed" in st.error
