"""Admin UI and API benchmarks on the synthetic 1 M-call store (`make bench`, group `ui`).

The admin listener runs as its own process (uvicorn, HTTPS with the generated certificate, as
`callvault admin serve` runs it) on a copy of bench/synth.py's store; a client process times
requests over loopback with keep-alive connections:

  ui_calls_page_p95_ms_1m   p95 ms of GET /calls (the HTML page, a DPO session: every line)
                            over a mix of filters: newest page, one line, one disposition, a
                            month, one caller's number, and pages half a year and two years
                            back (keyset cursor); target ≤ 150 ms
  ui_search_p95_ms_1m       p95 ms of GET /calls?q=… (transcript full-text search: keyed-token
                            index, then the call list of the hits) over common, mid-frequency,
                            rare, two-word and absent words (SEARCH_REPEATS rounds)
  api_requests_per_second   completed GET /api/v1/holds?active=true per second with a bearer
                            token (each request authenticates the token and records its use),
                            `API_CONCURRENCY` concurrent keep-alive connections for 10 s
  ui_bench_calls            N, the calls in the store; ui_bench_transcripts: the transcripts
  ui_screens                screenshots (1280x800) of each page written by the Playwright flows
                            (tests/integration/test_admin_browser.py) into bench/results/screens/

The synthetic store has no transcripts (bench/synth.py makes CDRs, subjects, recordings and
consents), so this benchmark seals and indexes transcripts for a sample of the answered calls
of the last 90 days (the transcript retention period) through `TranscriptVault.store`, the
appliance's own path; words are drawn Zipf-like from a vocabulary of ~2 000 words.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import Progress

from appliance.config import Config
from appliance.privacy import Actor
from bench import synth

REPO = Path(__file__).resolve().parents[1]
SCREENS = REPO / "bench" / "results" / "screens"
QUICK_CALLS = 20_000
TRANSCRIPTS = 20_000
QUICK_TRANSCRIPTS = 2_000
REPEATS = 25
# Searches for frequent words take seconds to minutes at this size (see `notes`): fewer rounds.
SEARCH_REPEATS = 5
API_CONCURRENCY = 8
API_SECONDS = 10.0
OP = Actor("bench", "operator")
console = Console()

# Words a receptionist line hears most, then a long tail of rarer ones.
_COMMON_TEXT = (
    "hello hi yes no please thank you thanks i would like to book an appointment for next "
    "monday tuesday wednesday thursday friday morning afternoon at ten eleven two three "
    "o'clock my name is and number phone call back cancel change move the time question "
    "about invoice price open today tomorrow week can we help with a message dentist "
    "cleaning check up pain tooth doctor insurance address street parking sorry okay good "
    "great bye goodbye"
)
COMMON = _COMMON_TEXT.split()
TAIL = [f"{a}{b}" for a in ("nor", "vel", "kar", "sol", "mi", "bra", "tun", "lek") for b in
        ("a", "en", "ing", "or", "ist", "us", "ell", "and", "ik", "om", "et", "ur", "ar", "is",
         "ul", "ona", "eri", "ast", "yn", "ok", "ene", "ia", "uk", "ald", "ern")]  # fmt: skip


def _vocabulary() -> tuple[list[str], list[float]]:
    words = COMMON + TAIL + [f"w{i:04d}" for i in range(1800)]
    weights = [1.0 / (rank + 1) ** 1.05 for rank in range(len(words))]
    return words, weights


def _p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000, 1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_config(state: Path, port: int) -> Config:
    cfg = synth.synth_config(state)
    # AMI where nothing listens: the pages measured here do not ask Asterisk anyway.
    return replace(
        cfg,
        admin=replace(cfg.admin, bind="127.0.0.1", port=port),
        asterisk=replace(cfg.asterisk, ami_port=1, ami_secret="unused"),
    )


def serve(state: str, port: str) -> None:
    """`python -m bench.ui serve STATE PORT`: the admin listener on the bench's copy."""
    import uvicorn

    from appliance.admin.listener import uvicorn_config

    uvicorn.Server(uvicorn_config(bench_config(Path(state), int(port)))).run()


# ---- preparing the copy
async def _prepare(cfg: Config, count: int, seed: int) -> dict[str, Any]:
    """Users, a token and `count` transcripts; what the client needs to log in and ask."""
    from appliance.admin.services import open_services
    from appliance.voice.transcripts import Segment, Transcript, TranscriptVault

    rng = random.Random(seed)
    words, weights = _vocabulary()
    out: dict[str, Any] = {}
    async with open_services(cfg) as svc:
        once = await svc.users.create("bench-dpo", "dpo", OP)
        row = await svc.db.user_by_name("bench-dpo")
        assert row is not None
        await svc.db.user_update(int(row["id"]), {"must_change": 0})
        _, out["cookie"] = await svc.users.login("bench-dpo", once)
        out["token"] = await svc.tokens.create("bench", ["holds:read"], OP)
        newest = await svc.db.calls_page(
            lines=None, since=None, until=None, disposition=None, subject_index=None,
            call_ids=None, before=None, limit=1,
        )  # fmt: skip
        end = float(newest[0]["started_at"])
        out["end"] = end
        agent_lines = [ln.name for ln in cfg.lines if ln.kind == "agent"]
        recent = await svc.db.calls_page(
            lines=agent_lines, since=end - 90 * 86400, until=None, disposition="ANSWERED",
            subject_index=None, call_ids=None, before=None, limit=count * 2,
        )  # fmt: skip
        # Keyset cursors half a year and two years back (pages ~3 000 and ~13 000 deep at
        # 1 M calls): a cursor is the last row of the page before, wherever it lies.
        out["cursors"] = []
        for days in (182, 730):
            at = await svc.db.calls_page(
                lines=None, since=None, until=end - days * 86400, disposition=None,
                subject_index=None, call_ids=None, before=None, limit=1,
            )  # fmt: skip
            if at:
                out["cursors"].append(f"{at[0]['started_at']!r}_{at[0]['id']}")
        vault = TranscriptVault(svc.db, svc.privacy)
        stored = 0
        t0 = time.monotonic()
        with Progress(console=console) as progress:
            task = progress.add_task("sealing and indexing transcripts", total=count)
            for call in recent:
                if stored >= count:
                    break
                own = await svc.db.call_own_subject_ids(str(call["id"]))
                if not own:
                    continue
                n_seg = rng.randint(4, 12)
                segments = tuple(
                    Segment(
                        4.0 * i, 4.0 * i + 3.5,
                        " ".join(rng.choices(words, weights, k=rng.randint(5, 14))),
                    )
                    for i in range(n_seg)
                )  # fmt: skip
                t = Transcript(
                    call_id=str(call["id"]), line=str(call["line"]), leg="caller",
                    language="en", language_prob=0.97, model="bench", duration_s=4.0 * n_seg,
                    segments=segments,
                )  # fmt: skip
                await vault.store(t, recording_id=None, subject_ids=own, actor=OP)
                stored += 1
                progress.advance(task)
        console.print(f"  {stored} transcripts in {time.monotonic() - t0:.0f} s")
        out["transcripts"] = stored
        # A caller with many calls, for the number filter.
        activity = await svc.db.subject_activity("phone")
        busiest = max(activity, key=lambda a: a[2])
        out["number"] = await svc.privacy.keyring.subject_value(busiest[0], busiest[1])
    return out


# ---- the client
async def _timed_gets(client: httpx.AsyncClient, urls: list[str], repeats: int) -> list[float]:
    for url in urls:  # warm-up: templates compiled, statements cached
        r = await client.get(url)
        r.raise_for_status()
    samples = []
    for _ in range(repeats):
        for url in urls:
            t0 = time.perf_counter()
            r = await client.get(url)
            samples.append(time.perf_counter() - t0)
            if r.status_code != 200:
                raise RuntimeError(f"GET {url}: {r.status_code} {r.text[:300]}")
    return samples


def _per_url(samples: list[float], urls: list[str]) -> str:
    cols = [samples[i :: len(urls)] for i in range(len(urls))]
    return ", ".join(
        f"{u.split('?', 1)[-1][:40] or 'newest'}: {statistics.median(c) * 1000:.0f}"
        for u, c in zip(urls, cols, strict=True)
    )


async def _api_rps(base: str, verify: Any, token: str) -> tuple[float, int]:
    headers = {"Authorization": f"Bearer {token}"}
    done = 0
    errors = 0
    deadline = 0.0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal done, errors
        while time.perf_counter() < deadline:
            r = await client.get("/api/v1/holds?active=true", headers=headers)
            if r.status_code == 200:
                done += 1
            else:
                errors += 1

    clients = [
        httpx.AsyncClient(base_url=base, verify=verify, timeout=30) for _ in range(API_CONCURRENCY)
    ]
    try:
        for c in clients:  # connections opened (TLS handshakes) before the clock starts
            (await c.get("/api/v1/holds?active=true", headers=headers)).raise_for_status()
        t0 = time.perf_counter()
        deadline = t0 + API_SECONDS
        await asyncio.gather(*(worker(c) for c in clients))
        elapsed = time.perf_counter() - t0
    finally:
        for c in clients:
            await c.aclose()
    return round(done / elapsed, 1), errors


async def _measure(base: str, cert: Path, prep: dict[str, Any]) -> dict[str, float]:
    import ssl

    verify = ssl.create_default_context(cafile=str(cert))
    end = datetime.fromtimestamp(prep["end"])
    month = end.replace(day=1)
    session = {"Cookie": f"__Host-cv_session={prep['cookie']}"}
    async with httpx.AsyncClient(
        base_url=base, verify=verify, timeout=600, headers=session
    ) as client:
        pages = [
            "/calls",
            "/calls?line=reception",
            "/calls?disposition=NO+ANSWER",
            f"/calls?since={month:%Y-%m-%d}&until={end:%Y-%m-%d}",
            f"/calls?number={prep['number'].replace('+', '%2B')}",
            *(f"/calls?before={c}" for c in prep["cursors"]),
        ]
        console.print(f"[bold]GET /calls: {len(pages)} filters x {REPEATS}")
        calls = await _timed_gets(client, pages, REPEATS)
        console.print(f"  medians (ms): {_per_url(calls, pages)}")
        words, _ = _vocabulary()
        queries = [
            f"/calls?q={words[3]}",  # among the most frequent words
            f"/calls?q={words[60]}",
            f"/calls?q={words[400]}",  # mid frequency
            f"/calls?q={words[1500]}",  # rare
            f"/calls?q={words[8]}+{words[120]}",  # two words: both must be said
            "/calls?q=xylophone",  # said in no call
        ]
        console.print(f"[bold]Transcript search: {len(queries)} queries x {SEARCH_REPEATS}")
        search = await _timed_gets(client, queries, SEARCH_REPEATS)
        console.print(f"  medians (ms): {_per_url(search, queries)}")
        t0 = time.perf_counter()
        (await client.get("/")).raise_for_status()
        first = time.perf_counter() - t0
        dash = await _timed_gets(client, ["/"], 5)
        console.print(
            f"  dashboard: first {first * 1000:.0f} ms (retention forecast computed), then "
            f"median {statistics.median(dash) * 1000:.0f} ms"
        )
    console.print(f"[bold]API: GET /api/v1/holds, {API_CONCURRENCY} connections, {API_SECONDS} s")
    rps, errors = await _api_rps(base, verify, prep["token"])
    console.print(f"  {rps} requests/s, {errors} errors")
    if errors:
        raise RuntimeError(f"{errors} API requests failed")
    return {
        "ui_calls_page_p95_ms_1m": _p95(calls),
        "ui_search_p95_ms_1m": _p95(search),
        "api_requests_per_second": rps,
    }


def _wait_for(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"admin listener did not start: {log.read_text()[-2000:]}"
                ) from None
            time.sleep(0.2)


def screenshots() -> int:
    """Run the browser flows with CALLVAULT_SCREENS set; how many screenshots they wrote."""
    shutil.rmtree(SCREENS, ignore_errors=True)
    SCREENS.mkdir(parents=True)
    env = {**os.environ, "CALLVAULT_SCREENS": str(SCREENS)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "integration", "-p", "no:cacheprovider",
         "tests/integration/test_admin_browser.py"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    shots = len(list(SCREENS.glob("*.png")))
    tail = done.stdout.strip().splitlines()[-1:] if done.stdout else []
    console.print(f"  browser flows: {' '.join(tail)}; {shots} screenshots in {SCREENS}")
    if done.returncode != 0:
        # The timings stand on their own; a failing flow is reported (loudly) with the
        # screenshots it did write, and is the browser test suite's to fail.
        console.print(done.stdout[-3000:], markup=False)
        console.print("[red bold]the browser flows failed: the screenshots are incomplete")
    return shots


def run(results: dict[str, float], quick: bool = False) -> dict[str, float]:
    """Measure the ui keys into `results` (and return them)."""
    spec = synth.Spec(calls=QUICK_CALLS if quick else synth.Spec().calls)
    console.print(f"[bold]Synthetic store: {spec.calls:,} calls (bench/synth.py, cached)")
    with Progress(console=console) as progress:
        src = synth.cached(spec, progress)
    work = Path(tempfile.mkdtemp(prefix="ui-", dir=src.parent))
    new: dict[str, float] = {"ui_bench_calls": spec.calls}
    try:
        synth.working_copy(src, work)
        port = _free_port()
        cfg = bench_config(work, port)
        prep = asyncio.run(_prepare(cfg, QUICK_TRANSCRIPTS if quick else TRANSCRIPTS, spec.seed))
        new["ui_bench_transcripts"] = prep["transcripts"]
        log = work / "admin.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bench.ui", "serve", str(work), str(port)],
                cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            _wait_for(port, proc, log)
            cert, _ = cfg.admin.cert_paths(cfg.state_dir)
            new.update(asyncio.run(_measure(f"https://localhost:{port}", cert, prep)))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    console.print("[bold]Screenshots of each page (Playwright, Debian's Chromium)")
    new["ui_screens"] = screenshots()
    results.update(new)
    return new


def notes(calls: int, transcripts: int) -> str:
    """The paragraph bench/results/latest.md gives the ui keys."""
    return " ".join(
        [
            f"UI keys (`ui_bench_calls` = {calls:,} calls, `ui_bench_transcripts` = "
            f"{transcripts:,}): `callvault admin serve`'s uvicorn listener (HTTPS, one process)",
            "on a copy of the bench/synth.py store, timed from a client process over loopback",
            "with keep-alive. `ui_calls_page_p95_ms_1m`: p95 of 25 rounds of 7 call-list pages",
            "(newest; one line; one disposition; one month; the busiest caller's number; keyset",
            "pages half a year and two years back) as a DPO (every line).",
            f"`ui_search_p95_ms_1m`: p95 of {SEARCH_REPEATS} rounds of 6 transcript searches",
            "(two frequent words, mid, rare, two-word and absent; audited; the medians per query",
            "are in the bench log: the frequent words set the p95). The synthetic store has no",
            "transcripts:",
            "the bench seals and indexes them for answered agent-line calls of the last 90 days",
            "via `TranscriptVault.store` (Zipf-like words from ~2 000).",
            "`api_requests_per_second`: GET /api/v1/holds?active=true with a bearer token,",
            f"{API_CONCURRENCY} concurrent keep-alive connections for {API_SECONDS:.0f} s (the",
            "Python client shares the machine's cores with the server: a lower bound).",
            "`ui_screens`: 1280x800 screenshots in bench/results/screens/ from",
            "tests/integration/test_admin_browser.py.",
        ]
    )


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3])
    else:
        sys.exit("usage: python -m bench.ui serve STATE_DIR PORT (the bench runs it)")
