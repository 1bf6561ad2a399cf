"""A campaign of 30 leads through the real Asterisk sandbox to a SIPp callee (issue 8).

The callee (bench/sipp/uas_campaign.xml) answers, is busy (number ends in 1) or never answers
(ends in 2); what SIPp received is read back from its message log, so "never dialled" is checked
on the SIP side. The dialler runs on a controllable clock (real time plus an offset): it starts
outside the calling window, then inside it. Mid-campaign the dialler is killed (its task
cancelled, plus one attempt claimed and never originated, as a crash between the two would
leave it) and a fresh one takes over.

The campaign calls on the announcement line `loadtest` (an answered call's outcome is
`answered`, no report to wait for). Outcomes from the AI report, with a lead saying "Stop calling
me." to the agent line for real, are test_spoken_opt_out_reaches_the_do_not_call_list; a real
SIGKILL of a dialler process and its restart is test_dialler_killed_mid_campaign_and_restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import sys
import time
import tomllib
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from appliance.campaign.campaign import Campaigns
from appliance.campaign.dialer import AmiOriginator, Dialler
from appliance.campaign.leads import Leads
from appliance.campaign.model import Settings
from appliance.campaign.outcomes import from_report as outcomes_from_report
from appliance.campaign.windows import Calendar, parse_windows
from appliance.config import Config, LineConfig
from appliance.config import load as config_load
from appliance.privacy import Privacy
from appliance.privacy.audit import Actor
from appliance.privacy.identifiers import Identifier
from appliance.server import Appliance
from appliance.store import Database
from appliance.telephony.sip import PjRuntime, SipError
from appliance.voice.postcall import Reporter
from appliance.voice.report import ReportResult, ReportWriter, default_writer
from bench.campaign import DIAL, UAS_IP, UAS_PORT, invited_numbers, start_uas, stop_uas
from tests.integration.campaign_runner import READY
from tests.integration.campaign_voice import CAMPAIGN_SCHEMA, piper_voice
from tests.integration.conftest import DEV_CONFIG, REPO, _phone
from tests.integration.test_voice import _until_quiet, wait_answer

pytestmark = pytest.mark.asyncio(loop_scope="session")
OP = Actor("it", "operator")
TZ = ZoneInfo("Europe/Stockholm")
WINDOW = "mon-sun 09:00-20:00"
MAX_CONCURRENT = 3


def number(i: int) -> str:
    return f"+4670500{i:04d}"


def digits(i: int) -> str:
    return number(i).lstrip("+")


def kill_number(i: int) -> str:
    return f"+4670600{i:04d}"


LATE_DNC = 15  # put on the do-not-call list after the import: blocked at dial time
DNC_IN_FILE = 99  # on the list before the import: refused by the import


class Clock:
    """Real time plus an offset the test moves (CDR times stay real; only windows matter)."""

    def __init__(self, at: datetime) -> None:
        self.offset = 0.0
        self.set(at)

    def set(self, at: datetime) -> None:
        self.offset = at.timestamp() - time.time()

    def __call__(self) -> float:
        return time.time() + self.offset


async def test_campaign_through_asterisk(
    app: Appliance, cfg: Config, sipp: str, tmp_path: Path
) -> None:
    privacy = app.telephony.privacy
    await privacy.dnc.add(number(DNC_IN_FILE), source="test", reason="", actor=OP)
    rows = "".join(f"{number(i)},Lead {i},consent\n" for i in [*range(30), DNC_IN_FILE])
    rep = await Leads(privacy).import_bytes(
        f"phone,name,basis\n{rows}".encode(), "it.csv", list_name="it-leads", actor=OP
    )
    assert (rep.imported, rep.bad) == (30, [(32, "on the do-not-call list")])
    await privacy.dnc.add(number(LATE_DNC), source="test", reason="", actor=OP)

    settings = Settings(
        windows=(WINDOW,), max_attempts=2, max_concurrent=MAX_CONCURRENT, calls_per_minute=120,
        retry_s={"busy": 4, "no_answer": 4, "failed": 4}, ring_timeout_s=3, dial=DIAL,
        report_wait_s=600, block_public_holidays=False,  # "tomorrow" may be a holiday
    )  # fmt: skip
    camps = Campaigns(privacy)
    cid = await camps.create("it", line="loadtest", list_name="it-leads", settings=settings,
                             actor=OP)  # fmt: skip
    await camps.act("it", "start", OP)

    tomorrow = datetime.now(TZ).date() + timedelta(days=1)
    clock = Clock(datetime(tomorrow.year, tomorrow.month, tomorrow.day, 6, 0, tzinfo=TZ))

    def dialler() -> Dialler:
        return Dialler(privacy, AmiOriginator(app.telephony), clock=clock)

    lead_of = {int(r["id"]): int(str(r["source_line"])) - 2 for r in await app.db.leads(
        int((await app.db.lead_list("it-leads") or {})["id"]))}  # fmt: skip

    uas = await start_uas(sipp, tmp_path)
    max_live = 0
    try:
        # Outside the window: nothing is dialled, every due lead waits with a blocked attempt.
        first = dialler()
        stats = await first.tick()
        assert stats.dialled == 0 and stats.blocked > 0
        clock.set(datetime(tomorrow.year, tomorrow.month, tomorrow.day, 10, 0, tzinfo=TZ))

        async def drive(d: Dialler, until: float) -> None:
            nonlocal max_live
            while time.monotonic() < until:
                await d.tick()
                ours = {str(a["call_id"]) for a in await app.db.attempts(cid)}
                live = {ch.linkedid for ch in app.telephony.channels.values()
                        if ch.linkedid in ours}  # fmt: skip
                max_live = max(max_live, len(live))
                camp = await app.db.campaign(cid)
                if camp is not None and camp["state"] == "done":
                    return
                await asyncio.sleep(0.2)

        # Run a while, then "kill" the dialler mid-pass and leave a claimed, never-dialled lead.
        task = asyncio.create_task(drive(first, time.monotonic() + 12))
        await asyncio.sleep(8)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        due = await app.db.campaign_due(cid, clock(), limit=10)
        pending = [r for r in due if lead_of[int(r["lead_id"])] != LATE_DNC]
        assert pending, "the campaign finished before the kill: make it longer"
        crashed_lead = lead_of[int(pending[0]["lead_id"])]
        assert await app.db.attempt_claim(cid, int(pending[0]["lead_id"]), "cv-crashed", clock())
        # Let the CDRs of calls that ended meanwhile arrive, then move the clock past the ring
        # timeout + grace, after which a claim with no call and no channel counts as lost.
        await asyncio.sleep(2)
        clock.offset += 120

        # The restart: a fresh dialler finds the open attempts and carries on.
        await drive(dialler(), time.monotonic() + 100)
    finally:
        await stop_uas(uas)
        keep = Path("/tmp/callvault-campaign-it")  # the callee's logs, to read after a failure
        shutil.rmtree(keep, ignore_errors=True)
        shutil.copytree(tmp_path, keep, ignore=shutil.ignore_patterns("*.wav"))

    camp = await app.db.campaign(cid)
    if camp is None or camp["state"] != "done":
        atts = await app.db.attempts(cid)
        errors = tmp_path / "uas_errors.log"
        pytest.fail(
            f"campaign not done: leads {await app.db.campaign_counts(cid)}; attempts "
            f"{Counter((a['state'], a['disposition'], a['outcome']) for a in atts)}; durations "
            f"{[round((a['ended_at'] or 0) - a['claimed_at']) for a in atts][:20]}; SIPp errors: "
            f"{errors.read_text()[-1500:] if errors.exists() else 'none'}"
        )
    final = {lead_of[int(r["lead_id"])]: (r["state"], r["outcome"], r["attempts"])
             for r in await app.db.campaign_leads(cid)}  # fmt: skip
    expected = {}
    for i in range(30):
        if i == LATE_DNC:
            expected[i] = ("blocked", "blocked", 0)
        elif i % 10 == 1:
            expected[i] = ("exhausted", "busy", 2)
        elif i % 10 == 2:
            expected[i] = ("exhausted", "no_answer", 2)
        else:
            expected[i] = ("done", "answered", 1)
    # The claim that never dialled was one of its lead's attempts (lost); the lead then got
    # its dial as normal.
    expected[crashed_lead] = (*expected[crashed_lead][:2], 2)
    assert final == expected

    # The SIP side: each lead dialled exactly as often as its attempts that were dialled.
    invited = Counter(invited_numbers(tmp_path))
    for i, (_, _, attempts) in expected.items():
        want = attempts - (1 if i == crashed_lead else 0)
        assert invited[digits(i)] == want, f"lead {i}: {invited[digits(i)]} INVITEs, want {want}"
    assert invited[digits(DNC_IN_FILE)] == 0
    assert invited[digits(LATE_DNC)] == 0
    assert max_live <= MAX_CONCURRENT

    # No dial outside the window, by the campaign's own clock.
    cal = Calendar(parse_windows((WINDOW,)))
    for att in await app.db.attempts(cid):
        if att["state"] not in {"blocked", "lost"}:
            assert cal.allowed(float(att["claimed_at"]), "SE", ["Europe/Stockholm"])


# ---- the appliance killed mid-campaign (SIGKILL) and restarted


def runner_config(cfg: Config, path: Path) -> Path:
    """The session's config as a file: same state dir (same secrets), a database of its own."""
    text = DEV_CONFIG.read_text().replace(
        'state_dir = "../var"\n',
        f'state_dir = "{cfg.state_dir}"\ndatabase = "{path.parent / "runner.db"}"\n',
    )
    assert tomllib.loads(text)["state_dir"] == str(cfg.state_dir)
    path.write_text(text)
    return path


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else ""


async def start_runner(config: Path, offset_s: float, log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.integration.campaign_runner", str(config), str(offset_s),
            cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=err,
        )  # fmt: skip
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    assert line.decode().strip() == READY, f"{line!r}; log: {tail(log)}"
    return proc


async def test_dialler_killed_mid_campaign_and_restarted(
    cfg: Config, sipp: str, tmp_path: Path
) -> None:
    """The dialler runs in a process of its own (campaign_runner), is SIGKILLed while calls it
    placed are up, and is started again: every lead is dialled exactly as often as its
    attempts say (INVITEs counted at the callee) and every lead reaches its final state."""
    leads = 10  # 1 busy, 2 unanswered (2 attempts each), the rest answer (~3.5 s calls)
    config = runner_config(cfg, tmp_path / "callvault.toml")
    run_cfg = config_load(config)
    tomorrow = datetime.now(TZ).date() + timedelta(days=1)
    offset = datetime(tomorrow.year, tomorrow.month, tomorrow.day, 10, 0, tzinfo=TZ).timestamp()
    offset -= time.time()
    port = UAS_PORT - 1  # not the first test's callee, which may still be winding down
    settings = Settings(
        windows=(WINDOW,), max_attempts=2, max_concurrent=4, calls_per_minute=200,
        retry_s={"busy": 2, "no_answer": 2, "failed": 2}, ring_timeout_s=3,
        dial=f"PJSIP/loadgen/sip:{{digits}}@{UAS_IP}:{port}", block_public_holidays=False,
    )  # fmt: skip
    async with Database(run_cfg.database) as db:
        privacy = Privacy(run_cfg, db)
        rows = "".join(f"{kill_number(i)},consent\n" for i in range(leads))
        rep = await Leads(privacy).import_bytes(
            f"phone,basis\n{rows}".encode(), "kill.csv", list_name="kill", actor=OP
        )
        assert rep.imported == leads
        camps = Campaigns(privacy)
        cid = await camps.create("kill", line="hello", list_name="kill", settings=settings,
                                 actor=OP)  # fmt: skip
        await camps.act("kill", "start", OP)
        lead_of = {int(r["id"]): int(str(r["source_line"])) - 2 for r in await db.leads(
            int((await db.lead_list("kill") or {})["id"]))}  # fmt: skip

    uas = await start_uas(sipp, tmp_path, port=port)
    log = tmp_path / "runner.log"
    procs: list[asyncio.subprocess.Process] = []
    try:
        procs.append(await start_runner(config, offset, log))
        # SIGKILL once several calls it placed are up (and more leads still wait).
        async with Database(run_cfg.database) as db:
            async with asyncio.timeout(30):
                while len(await db.attempts(cid, state="dialling")) < 3:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            procs[0].kill()
            await procs[0].wait()
            out_at_kill = {str(a["call_id"]) for a in await db.attempts(cid, state="dialling")}
            assert len(out_at_kill) >= 3
            assert (await db.campaign_counts(cid)).get("pending", 0) > 0, "killed too late"
        # Down for a while: the calls it left up end meanwhile, unseen by it.
        await asyncio.sleep(5)
        # Restarted, its clock past the ring timeout + grace, so that a claim the kill left
        # without a call (if it landed between claim and originate) resolves as lost.
        procs.append(await start_runner(config, offset + 120, log))
        async with Database(run_cfg.database) as db:
            async with asyncio.timeout(60):
                while ((await db.campaign(cid)) or {}).get("state") != "done":  # noqa: ASYNC110
                    await asyncio.sleep(0.3)
            atts = await db.attempts(cid)
            final = {lead_of[int(r["lead_id"])]: (r["state"], r["outcome"])
                     for r in await db.campaign_leads(cid)}  # fmt: skip
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), 30)
        await stop_uas(uas)
    assert procs[1].returncode == 0, tail(log)

    # None lost: every lead finished as the callee's pattern says.
    expected = {
        i: ("exhausted", "busy") if i % 10 == 1
        else ("exhausted", "no_answer") if i % 10 == 2
        else ("done", "answered")
        for i in range(leads)
    }  # fmt: skip
    assert final == expected, Counter((a["state"], a["disposition"]) for a in atts)
    # The calls that were up at the kill were resolved from their CDRs after the restart.
    by_call = {str(a["call_id"]): a for a in atts}
    assert all(by_call[c]["state"] == "done" and by_call[c]["disposition"] for c in out_at_kill)
    # None called twice: INVITEs at the callee per number = that lead's dialled attempts.
    invited = Counter(invited_numbers(tmp_path))
    dialled = Counter(
        lead_of[int(a["lead_id"])] for a in atts if a["state"] not in {"blocked", "lost"}
    )
    lost = Counter(lead_of[int(a["lead_id"])] for a in atts if a["state"] == "lost")
    for i in range(leads):
        # A claim the kill left without a call counts as one of the lead's attempts (lost).
        want = 2 - lost[i] if i % 10 in {1, 2} else 1
        assert dialled[i] == want, f"lead {i}: {dialled[i]} dialled attempts, want {want}"
        assert invited[kill_number(i).lstrip("+")] == want, f"lead {i}: {invited}"


# ---- "Stop calling me." said by the lead, heard by the real post-call pipeline

OPT_OUT_SAYS = "Stop calling me."


class Routed:
    """The carrier's routing, in the sandbox: one lead's number rings a pjsua2 desk phone
    (extension 204), every other number the SIPp callee. Originates are real (AMI)."""

    def __init__(self, inner: AmiOriginator, routes: dict[str, str]) -> None:
        self.inner = inner
        self.routes = routes

    async def originate(
        self, *, call_id: str, channel: str, number: str, line: LineConfig, timeout_s: int
    ) -> None:
        await self.inner.originate(
            call_id=call_id, channel=self.routes.get(number, channel), number=number, line=line,
            timeout_s=timeout_s,
        )  # fmt: skip

    def is_live(self, call_id: str) -> bool | None:
        return self.inner.is_live(call_id)


class Observed:
    """The real report writer for the campaign's calls, its results and the transcripts it was
    given kept to assert on (the erasure that follows an opt-out deletes both from the store);
    other calls the pipeline reports meanwhile (earlier tests' backlog) go to `previous`."""

    def __init__(
        self, app: Appliance, writer: ReportWriter, previous: Reporter | None, campaign: int
    ) -> None:
        self.app, self.writer, self.previous, self.campaign = app, writer, previous, campaign
        self.results: dict[str, ReportResult] = {}
        self.heard: dict[str, str] = {}

    async def report(self, call_id: str) -> object:
        ours = {str(a["call_id"]) for a in await self.app.db.attempts(self.campaign)}
        if call_id not in ours:
            return None if self.previous is None else await self.previous.report(call_id)
        legs = await self.app.postcall.transcript(call_id, OP, "campaign integration test")
        self.heard[call_id] = " ".join(s.text for t in legs for s in t.segments)
        result = await self.writer.report(call_id)
        self.results[call_id] = result
        return result


@pytest.mark.timeout(240)
async def test_spoken_opt_out_reaches_the_do_not_call_list(
    app: Appliance, cfg: Config, runtime: PjRuntime, sipp: str, tmp_path: Path
) -> None:
    """A lead's phone answers the agent line's call and says "Stop calling me." (Piper): the
    recorded call is transcribed (Whisper) and reported (LLM, the campaign report schema) by the
    appliance's post-call pipeline, the number goes on the do-not-call list, the line erases
    the lead's data, and a later campaign holding the same number never rings the phone."""
    privacy = app.telephony.privacy
    line = cfg.line_by_name("reception")
    assert line is not None and line.kind == "agent"
    # The campaign's line: the AI reception line, erasing on opt-out, campaign report schema.
    camp_line = replace(line, erase_on_opt_out=True, summary_schema=CAMPAIGN_SCHEMA)
    camp_cfg = replace(cfg, lines=tuple(camp_line if ln is line else ln for ln in cfg.lines))
    voice = piper_voice(cfg)
    speech = await asyncio.to_thread(lambda: b"".join(voice.speak(OPT_OUT_SAYS)))
    opted, busy = "+46705100007", "+46705100011"  # busy: ends in 1 (the SIPp callee's pattern)
    for name, nums in (("spoken", [opted, busy]), ("later", [opted])):
        rep = await Leads(privacy).import_bytes(
            ("phone,name,basis\n" + "".join(f"{n},Lead {n[-2:]},consent\n" for n in nums)).encode(),
            f"{name}.csv", list_name=name, actor=OP,
        )  # fmt: skip
        assert (rep.imported, rep.bad) == (len(nums), [])
    settings = Settings(
        windows=(WINDOW,), max_attempts=1, max_concurrent=2, calls_per_minute=60,
        ring_timeout_s=10, dial=DIAL, report_wait_s=600, block_public_holidays=False,
    )  # fmt: skip
    camps = Campaigns(privacy)
    first = await camps.create("spoken", line="reception", list_name="spoken", settings=settings,
                               actor=OP)  # fmt: skip
    later = await camps.create("later", line="reception", list_name="later", settings=settings,
                               actor=OP)  # fmt: skip
    tomorrow = datetime.now(TZ).date() + timedelta(days=1)
    clock = Clock(datetime(tomorrow.year, tomorrow.month, tomorrow.day, 10, 0, tzinfo=TZ))

    phone = await _phone(cfg, runtime, "204")
    uas = await start_uas(sipp, tmp_path)
    previous_cfg, previous_reporter = privacy.cfg, app.postcall.reporter
    observed = Observed(app, default_writer(camp_cfg, app.db, privacy), previous_reporter, first)
    privacy.cfg, app.postcall.reporter = camp_cfg, observed
    try:
        dialler = Dialler(
            privacy, Routed(AmiOriginator(app.telephony), {opted: "PJSIP/204"}), clock=clock
        )
        await camps.act("spoken", "start", OP)
        await dialler.tick()
        call = await phone.next_incoming(timeout=15)  # auto-answered
        await call.wait_confirmed(timeout=10)
        await wait_answer(call, 0)  # the agent's greeting
        await _until_quiet(call)
        call.play(speech)
        await call.wait_played()
        await asyncio.sleep(1.0)
        await call.hangup()
        await call.wait_ended(timeout=5)

        try:
            async with asyncio.timeout(150):  # transcription, the report (LLM load included)
                while ((await app.db.campaign(first)) or {}).get("state") != "done":
                    await dialler.tick()
                    await asyncio.sleep(0.5)
        except TimeoutError:
            atts = await app.db.attempts(first)
            pytest.fail(
                f"no outcome: attempts {[(a['call_id'], a['state'], a['outcome']) for a in atts]}"
                f"; post-call jobs {await app.db.post_call_jobs(unfinished=True)}; live "
                f"{[c.linkedid for c in app.telephony.channels.values()]}; reports "
                f"{observed.results}; recordings "
                f"{[len(await app.db.recordings(str(a['call_id']))) for a in atts]}"
            )

        # The later campaign with the same number: it never rings the phone.
        await camps.act("later", "start", OP)
        for _ in range(6):
            await dialler.tick()
            await asyncio.sleep(0.5)
        with pytest.raises(SipError):
            await phone.next_incoming(timeout=1)
    finally:
        privacy.cfg, app.postcall.reporter = previous_cfg, previous_reporter
        await stop_uas(uas)
        await phone.stop()

    # What the pipeline heard and reported (real Whisper, real LLM, grounded on the words).
    assert len(observed.results) == 1, observed.results
    (call_id, result), = observed.results.items()  # fmt: skip
    assert "stop calling" in observed.heard[call_id].lower(), observed.heard
    assert result.status == "ok" and result.report is not None, result.errors
    assert result.report["opt_out"] is True, result.report
    assert outcomes_from_report(result.report).name == "opt_out"

    outcome = {int(r["lead_id"]): (r["state"], r["outcome"])
               for r in await app.db.campaign_leads(first)}  # fmt: skip
    assert sorted(outcome.values()) == [("done", "opt_out"), ("exhausted", "busy")]
    # On the do-not-call list (with the objection the call raised), the lead's data erased.
    assert await privacy.dnc.find(Identifier("phone", opted)) is not None
    rep = await Leads(privacy).import_bytes(
        f"phone,basis\n{opted},consent\n".encode(), "again.csv", list_name="again", actor=OP
    )
    assert rep.bad == [(2, "on the do-not-call list")]
    erased = [r for name in ("spoken", "later")
              for r in await app.db.leads(int((await app.db.lead_list(name) or {})["id"]))
              if r["state"] == "erased"]  # fmt: skip
    assert len(erased) == 2 and all(bytes(r["fields_enc"]) == b"" for r in erased)
    kinds = {r["kind"] for r in await app.db.rr_for_subject(bytes(erased[0]["blind_index"]))}
    assert "objection" in kinds
    # The SIP side: the phone rang once (the pjsua2 queue above), the SIPp callee got the busy
    # lead only; the later campaign's lead stopped without a dial.
    assert Counter(invited_numbers(tmp_path)) == {busy.lstrip("+"): 1}
    assert all(a["state"] in {"blocked", "done"} and a["outcome"] != "answered"
               for a in await app.db.attempts(later))  # fmt: skip
    assert [(r["state"], r["outcome"]) for r in await app.db.campaign_leads(later)] == [
        ("blocked", "opt_out")
    ]
