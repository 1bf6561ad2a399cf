"""Long work from the admin pages runs as a job whose progress bar htmx polls.

The registry on its own (progress from a probe, failures, one run per key, per-user ids),
then the rights-request page end to end through Litestar's test client: the export step is
held open so the page really is mid-run when it is looked at.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from litestar.testing import AsyncTestClient

from appliance.admin.jobs import JobError, Jobs, Outcome, registry
from appliance.config import Config
from appliance.privacy.rights.context import Context
from appliance.privacy.rights.model import Kind, RightsError
from appliance.privacy.rights.steps import PIPELINES
from tests.admin.test_ui import _csrf, _logged_in
from tests.admin.test_ui import cfg as cfg  # noqa: PLC0414  # the seeded box, reused
from tests.admin.test_ui import client as client  # noqa: PLC0414

Client = AsyncTestClient  # type: ignore[type-arg]


async def _until(cond: object, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():  # type: ignore[operator]
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.02)


async def test_a_job_reports_its_probe_then_its_outcome() -> None:
    jobs = Jobs(grace_s=0)
    gate = asyncio.Event()
    at = {"n": 0}

    async def work() -> Outcome:
        at["n"] = 2
        await gate.wait()
        return Outcome("all done", "/result", "the result")

    async def probe() -> tuple[int, str]:
        return at["n"], f"step {at['n']}"

    job = jobs.start("k", "1", "Thing #1", "ann", work, total=4, probe=probe)
    with pytest.raises(JobError, match="already running"):
        jobs.start("k", "1", "Thing #1", "ann", work, total=4)
    await asyncio.sleep(0)
    await job.refresh()
    assert (job.running, job.done, job.stage) == (True, 2, "step 2")
    assert jobs.get(job.id, "ann") is job
    with pytest.raises(JobError):
        jobs.get(job.id, "bob")  # another user's job id finds nothing
    gate.set()
    await _until(lambda: not job.running)
    assert (job.state, job.done, job.outcome) == (
        "done",
        4,
        Outcome("all done", "/result", "the result"),
    )
    # Once finished, the same work may run again.
    again = jobs.start("k", "1", "Thing #1", "ann", work, total=4)
    await _until(lambda: not again.running)


async def test_a_failed_job_says_why_and_old_ones_are_forgotten() -> None:
    jobs = Jobs(keep=2, grace_s=5)

    async def fails() -> Outcome:
        raise RightsError("step 'export' failed (disk full)")

    async def bug() -> Outcome:
        raise ZeroDivisionError("oops")

    job = jobs.start("k", "a", "A", "ann", fails, total=3)
    await jobs.settle(job)
    assert (job.state, job.error) == ("failed", "step 'export' failed (disk full)")
    assert job.done == 0  # a failure does not fill the bar
    crash = jobs.start("k", "b", "B", "ann", bug)
    await jobs.settle(crash)
    assert crash.state == "failed" and "ZeroDivisionError" in crash.error
    last = jobs.start("k", "c", "C", "ann", fails)
    await jobs.settle(last)
    with pytest.raises(JobError):
        jobs.get(job.id, "ann")  # the oldest finished job went
    assert jobs.get(last.id, "ann") is last


@pytest_asyncio.fixture
async def held_export(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[asyncio.Event]:
    """The access export waits until the test releases it (the test client shares our loop)."""
    release = asyncio.Event()
    steps = PIPELINES[Kind.ACCESS]
    name, write = steps[1]
    assert name == "export"

    async def held(ctx: Context) -> None:
        await release.wait()
        await write(ctx)

    monkeypatch.setitem(PIPELINES, Kind.ACCESS, [steps[0], (name, held), *steps[2:]])
    yield release
    release.set()


def _progress(html: str) -> tuple[int, int]:
    m = re.search(r'<progress max="(\d+)" value="(\d+)">', html)
    assert m, html
    return int(m.group(2)), int(m.group(1))


async def test_running_a_request_shows_a_polled_progress_bar_then_the_export(
    client: Client, cfg: Config, held_export: asyncio.Event
) -> None:
    registry(client.app.state).grace_s = 0  # every run shows the bar, however quick
    await _logged_in(client, cfg, "paula", "dpo")
    token = _csrf((await client.get("/requests")).text)
    r = await client.post(
        "/requests",
        data={"kind": "access", "identifier": "0701234567", "channel": "phone",
              "_csrf_token": token},
    )  # fmt: skip
    base = re.search(r"/requests/\d+", str(r.url)).group(0)  # type: ignore[union-attr]
    await client.post(f"{base}/attest", data={"note": "called back", "_csrf_token": token})
    r = await client.post(f"{base}/process", data={"_csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303
    location = r.headers["location"]
    job_id = re.fullmatch(rf"{base}\?job=([\w-]+)", location).group(1)  # type: ignore[union-attr]
    page = await client.get(location)
    assert f'hx-get="/jobs/{job_id}"' in page.text and 'hx-trigger="load delay:1s"' in page.text
    assert "<script>" not in page.text  # the bar is htmx polling, no inline script (CSP)
    # Mid-run: the export step is the one running, the bar says one of three steps is done.
    poll = {"hx-request": "true"}
    for _ in range(200):  # the first step (resolve) finishes, then the held export runs
        frag = await client.get(f"/jobs/{job_id}", headers=poll)
        if 'value="1"' in frag.text:
            break
        await asyncio.sleep(0.02)
    assert frag.status_code == 200 and "hx-refresh" not in frag.headers
    assert _progress(frag.text) == (1, 3)
    assert "Step 2 of 3: export" in frag.text
    # A second click while it runs is refused, not run twice.
    r = await client.post(f"{base}/process", data={"_csrf_token": token})
    assert "already running" in r.text
    held_export.set()
    for _ in range(200):
        frag = await client.get(f"/jobs/{job_id}", headers=poll)
        if "hx-get" not in frag.text:
            break
        await asyncio.sleep(0.05)
    assert _progress(frag.text) == (3, 3)
    assert frag.headers["hx-refresh"] == "true"  # the page reloads once, showing the new state
    assert "request complete" in frag.text
    assert f'href="{base}/export"' in frag.text
    page = await client.get(location)
    assert 'hx-get="/jobs/' not in page.text  # finished: nothing polls any more
    assert _progress(page.text) == (3, 3) and "request complete" in page.text
    export = await client.get(f"{base}/export")
    assert export.status_code == 200 and export.content[:2] == b"PK"


async def test_someone_elses_job_is_not_found(client: Client, cfg: Config) -> None:
    await _logged_in(client, cfg, "otto", "dpo")

    async def work() -> Outcome:
        return Outcome("done")

    jobs = registry(client.app.state)
    theirs = jobs.start("k", "1", "Their export", "paula", work)
    mine = jobs.start("k", "2", "My export", "otto", work)
    await jobs.settle(theirs)
    assert (await client.get(f"/jobs/{mine.id}")).status_code == 200
    assert (await client.get(f"/jobs/{theirs.id}")).status_code == 404
    assert (await client.get("/jobs/nope")).status_code == 404
