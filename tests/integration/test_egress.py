"""Zero egress (issue 7): the appliance in a network namespace whose only peers are a fake SIP
trunk and a capturing "internet" takes a full AI call — greeting, two spoken caller turns
answered by the voice agent, recordings, post-call transcripts and report — and the internet
sees not one packet from it.

The scenario is bench/egress.py's (the same run gives `make bench` its `egress_packets`); read
its docstring for the topology and for what counts as egress. Asterisk runs from the shared
sandbox rootfs inside the box's namespace, so this module needs the sandbox to itself: the
conftest orders it before every other integration test, ahead of the session's own Asterisk
in the root namespace, and it refuses to run once that one is up.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import egress
from bench.egress import EgressRun
from tests.integration import conftest

# Model loading, a ~1 minute call and post-call transcription + summary on two shared cores.
pytestmark = pytest.mark.timeout(1500)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> EgressRun:
    if conftest.SESSION["asterisk_up"]:
        pytest.fail(
            "the session's Asterisk is already up in the root namespace; the egress test must "
            "run before it (conftest orders test_egress.py first) or in its own pytest process"
        )
    return egress.run_egress_call(tmp_path_factory.mktemp("egress"), log=lambda _: None)


def test_the_internet_sees_nothing_from_the_appliance(run: EgressRun) -> None:
    assert run.egress == [], run.summary()
    # The capture ran from before the appliance started until after it stopped, dropping none.
    assert run.capture_problems == [], run.summary()


def test_the_trunk_saw_the_call_and_nothing_else(run: EgressRun) -> None:
    tr = run.trunk
    assert tr.sip_from_trunk[0] == f"INVITE sip:100@{egress.BOX_TRUNK_IP}:5060 SIP/2.0", (
        run.summary()
    )
    assert "SIP/2.0 200 OK" in tr.sip_from_box, run.summary()
    assert any(m.startswith("BYE ") for m in tr.sip_from_trunk), run.summary()
    # Audio both ways for the whole call (50 packets a second each way).
    call_s = float(run.caller["call_seconds"])
    assert tr.rtp_to_box >= 40 * call_s and tr.rtp_from_box >= 40 * call_s, run.summary()
    # Between the box and the trunk: SIP, RTP and the ARP that finds each other's MAC, and
    # the trunk's "port unreachable" for the last RTP packets the box sent as the trunk's
    # caller closed its socket (the reply to allowed traffic; seen under heavy load).
    assert all(
        p.proto == "arp" or (p.proto == "icmp" and p.icmp_type == 3 and p.src == egress.TRUNK_IP)
        for p in tr.other
    ), run.summary()


def test_the_call_ran_end_to_end(run: EgressRun) -> None:
    assert egress.check_call(run) == [], run.summary()
    cdr = run.cdrs[0]
    assert (cdr["line"], cdr["direction"], cdr["dialed_number"]) == ("reception", "inbound", "100")
    assert sorted(r["leg"] for r in run.recordings) == ["callee", "caller", "mixed"]
    for rec in run.recordings:
        with Path(rec["path"]).open("rb") as fh:
            assert fh.read(4) != b"RIFF"  # encrypted at rest
    if egress.WAIT_FOR_POSTCALL:
        assert {t["leg"] for t in run.transcripts} >= {"caller"}, run.transcripts
        assert run.report is not None
