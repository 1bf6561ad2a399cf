"""SIP scanner traffic (friendly-scanner, sipvicious): the SIP guard strikes unknown-account
probes from AMI security events, and the firewall role's nftables ruleset rate-limits SIP per
source address. The same things against the real Asterisk and real namespaces:
tests/integration/test_scanner.py."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jinja2
import pytest
import pytest_asyncio
import yaml

from appliance.pbx.apply import PbxManager
from appliance.pbx.render import PJSIP_FILE
from appliance.pbx.security import SipGuard
from appliance.privacy import Privacy
from appliance.store import Database
from tests.pbx.conftest import make_cfg

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "ansible" / "roles" / "firewall"
SCANNER = "IPV4/UDP/203.0.113.66/5070"


def probe_events(account: str, remote: str = SCANNER, call_id: str = "") -> list[dict[str, str]]:
    """What Asterisk 22's res_pjsip raises over AMI for one probe of a nonexistent account
    (REGISTER, OPTIONS or INVITE alike; recorded from the sandbox): InvalidAccountID, then
    ChallengeSent for its artificial endpoint. No User-Agent in either."""
    common = {
        "Privilege": "security,all",
        "Service": "PJSIP",
        "EventVersion": "1",
        "SessionID": call_id or f"scan-{account}",
        "LocalAddress": "IPV4/UDP/192.0.2.10/5060",
        "RemoteAddress": remote,
    }
    return [
        {"Event": "InvalidAccountID", "Severity": "Error", "AccountID": account, **common},
        {"Event": "ChallengeSent", "Severity": "Informational", "AccountID": "<unknown>",
         **common},
    ]  # fmt: skip


@pytest_asyncio.fixture
async def guard(tmp_path: Path) -> AsyncIterator[SipGuard]:
    cfg = make_cfg(tmp_path)
    cfg.asterisk.host_path(cfg.asterisk.config_dir).mkdir(parents=True)
    async with Database(cfg.database) as db:
        g = SipGuard(PbxManager(cfg, db, Privacy(cfg, db)))
        await g.refresh_settings()
        yield g


async def settle(guard: SipGuard) -> None:
    for task in list(guard._tasks):
        await task


async def feed(guard: SipGuard, events: list[dict[str, str]]) -> None:
    for ev in events:
        guard.on_event(ev)
    await settle(guard)


async def test_scanner_probes_to_unknown_accounts_get_the_address_blocked(
    guard: SipGuard,
) -> None:
    # Nine probes: one strike each (the challenge that follows is not a second one).
    for n in range(9):
        await feed(guard, probe_events(f"{100 + n}"))
    # A desk phone's challenged REGISTER is no failure, however often it comes.
    known = {
        "Event": "ChallengeSent",
        "AccountID": "301",
        "RemoteAddress": "IPV4/UDP/192.0.2.50/5060",
    }
    await feed(guard, [known] * 20)
    assert await guard.manager.db.pbx_blocks() == []
    # One probe from another address does not add to the scanner's count, nor block itself.
    await feed(guard, probe_events("100", remote="IPV4/UDP/192.0.2.51/5060"))
    assert await guard.manager.db.pbx_blocks() == []
    await feed(guard, probe_events("109"))
    blocks = await guard.manager.db.pbx_blocks(active_at=time.time())
    assert [b["address"] for b in blocks] == ["203.0.113.66"]
    assert blocks[0]["failures"] == 10 and blocks[0]["reason"] == "InvalidAccountID"
    etc = guard.manager.cfg.asterisk.host_path(guard.manager.cfg.asterisk.config_dir)
    assert "[cvpbx-blocked]\ntype = acl\ndeny = 203.0.113.66" in (etc / PJSIP_FILE).read_text()
    # The block working (FailedACL from the blocked address) does not count again.
    await feed(guard, [{**probe_events("110")[0], "Event": "FailedACL"}])
    assert guard.blocked_events == 1


async def test_scanner_reusing_one_call_id_is_still_counted_per_probe(guard: SipGuard) -> None:
    for n in range(10):
        await feed(guard, probe_events(f"{200 + n}", call_id="same-call-id"))
    blocks = await guard.manager.db.pbx_blocks(active_at=time.time())
    assert [b["address"] for b in blocks] == ["203.0.113.66"]


# ---- the firewall role's ruleset
def render_ruleset(**overrides: Any) -> str:
    variables = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    variables.update(
        ansible_managed="test",
        callvault_admin_port=8443,
        callvault_sip_sources=["192.0.2.0/24", "198.51.100.7"],
        callvault_trunk_addresses=["198.51.100.7", "198.51.100.8"],
        callvault_admin_networks=["192.0.2.0/24"],
        callvault_ntp_servers=["192.0.2.1"],
        callvault_dns_servers=["192.0.2.1"],
    )
    variables.update(overrides)
    # Ansible's template module renders with trim_blocks on.
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined, trim_blocks=True, keep_trailing_newline=True
    )
    return env.from_string((ROLE / "templates" / "nftables.conf.j2").read_text()).render(
        **variables
    )


def input_chain(ruleset: str) -> list[str]:
    body = ruleset.split("chain input {", 1)[1].split("}\n", 1)[0]
    return [ln.strip() for ln in body.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def test_ruleset_limits_sip_per_source_before_the_established_accept() -> None:
    rules = input_chain(render_ruleset())
    udp = next(r for r in rules if r.startswith("udp dport 5060") and "@sip_rate" in r)
    assert "ip saddr != $trunk" in udp
    assert re.search(r"limit rate over 20/second burst 60 packets \} counter drop$", udp)
    tcp = next(r for r in rules if r.startswith("tcp dport 5060") and "@sip_rate" in r)
    assert "ct state new" in tcp and "ip saddr != $trunk" in tcp
    # Before the established accept, else a scanner's follow-ups skip the limit.
    assert rules.index(udp) < rules.index("ct state established,related accept")
    assert rules.index(udp) > rules.index('iif "lo" accept')


def test_ruleset_limit_variables_and_off_switch() -> None:
    no_trunk = render_ruleset(callvault_trunk_addresses=[], callvault_sip_rate_per_s=5,
                              callvault_sip_rate_burst=7)  # fmt: skip
    assert "$trunk" not in no_trunk
    assert "limit rate over 5/second burst 7 packets" in no_trunk
    off = render_ruleset(callvault_sip_rate_per_s=0)
    assert "sip_rate" not in off and "limit rate" not in off


@pytest.mark.parametrize("trunk", [["198.51.100.7"], []])
def test_ruleset_passes_nft_check(tmp_path: Path, trunk: list[str]) -> None:
    if shutil.which("nft") is None or os.geteuid() != 0:
        # scripts/install installs nftables and the suite runs as root: a missing piece fails.
        pytest.fail("`nft -c` needs nftables installed and root (CAP_NET_ADMIN)")
    path = tmp_path / "nftables.conf"
    path.write_text(render_ruleset(callvault_trunk_addresses=trunk))
    out = subprocess.run(
        ["nft", "-c", "-f", str(path)], capture_output=True, text=True, check=False, timeout=30
    )
    assert out.returncode == 0, out.stderr
