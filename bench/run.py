"""`make bench`: benchmarks of the telephony core against the real Asterisk sandbox.

Writes bench/results/latest.json (flat keys, numbers only; keys of other issues are kept) and
bench/results/latest.md. Timings on shared machines are noisy: medians of repeats are reported.

Keys:
  asterisk_sandbox_start_s   median seconds from `sandbox up` to AMI answering (5 starts)
  ami_events_per_second      AMI events parsed and dispatched per second by our client, replaying
                             a real Asterisk transcript (bench/fixtures/ami_transcript.ami)
  sipp_concurrent_calls_ok   largest concurrent recorded-call count with 0 failures (sweep to 200;
                             every call answered, its CDR written, its recording ingested)
  sipp_calls_per_second      highest call rate with 0 failures (same checks), calls of 1 s
  privacy group (`--only privacy`): DSAR lookup, erasure, export, encryption and retention on
                             a synthetic store of 1 M calls; keys in bench/privacy.py
  campaign group (`--only campaign`): lead_import_rows_per_s, campaign_dials_per_minute; keys in
                             bench/campaign.py
  ui group (`--only ui`): the admin call list and transcript search on the 1 M-call store, API
                             requests/s over loopback HTTPS, page screenshots; keys in bench/ui.py
  dialogue group (`--only dialogue`): dialogue_task_success, dialogue_invented_facts,
                             dialogue_turns_per_task, dialogue_audio_task_success; bench/dialogue.py
  ops group (`--only ops`): metrics_scrape_ms, a Prometheus scrape on the 1 M-call store;
                             keys in bench/ops.py
  pbx group (`--only pbx`): config_apply_ms, a PBX change until live in Asterisk (median);
                             keys in bench/pbx.py
  maint group (`--only maint`): upgrade_seconds, `callvault upgrade` from the previous schema
                             on the 1 M-call store; keys in bench/maint.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress

from appliance import config
from appliance.config import Config
from appliance.store import Database
from appliance.telephony import render
from appliance.telephony.ami import AmiClient
from appliance.telephony.service import TelephonyService

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
SCENARIO = REPO / "bench" / "sipp" / "uac_pcap.xml"
TRANSCRIPT = REPO / "bench" / "fixtures" / "ami_transcript.ami"
SANDBOX = REPO / "asterisk" / "sandbox"
console = Console()


def bench_config(state: Path) -> Config:
    dev = REPO / "config" / "callvault.dev.toml"
    raw = tomllib.loads(dev.read_text())
    raw["state_dir"] = str(state)
    return config.parse(raw, base_dir=dev.parent, source=dev)


def sandbox(cfg: Config, action: str) -> None:
    env = {"CALLVAULT_ROOTFS": str(cfg.asterisk.root), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    subprocess.run([str(SANDBOX), action], env=env, check=True, capture_output=True, timeout=120)


def bench_sandbox_start(cfg: Config, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        sandbox(cfg, "down")
        t0 = time.perf_counter()
        sandbox(cfg, "up")
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times), 3)


def bench_ami_parse(repeats: int = 5, rounds: int = 40) -> float:
    """Replay a real transcript through panoramisk's protocol and our dispatch."""
    from panoramisk.ami_protocol import AMIProtocol

    data = TRANSCRIPT.read_bytes()
    per_round = data.count(b"Event: ")
    rates = []
    for _ in range(repeats):
        seen = 0

        def count(_ev: object) -> None:
            nonlocal seen
            seen += 1

        client = AmiClient(host="127.0.0.1", port=1, username="x", secret="x", on_event=count)
        manager = client._manager
        loop = asyncio.new_event_loop()
        manager.loop = loop
        proto = AMIProtocol()

        class _NoTransport:
            def write(self, _data: bytes) -> None:
                pass

        proto.connection_made(_NoTransport())
        proto.factory = manager
        proto.encoding = "utf8"
        t0 = time.perf_counter()
        for _ in range(rounds):
            for i in range(0, len(data), 4096):  # TCP-sized reads, messages split across them
                proto.data_received(data[i : i + 4096])
        elapsed = time.perf_counter() - t0
        # Let panoramisk's FullyBooted handler (scheduled by the replay) finish before closing.
        loop.run_until_complete(asyncio.sleep(0.01))
        loop.close()
        if seen < per_round * rounds * 0.95:
            raise RuntimeError(f"parsed {seen} events, expected {per_round * rounds}")
        rates.append(seen / elapsed)
    return round(statistics.median(rates))


async def sipp_round(
    svc: TelephonyService, cfg: Config, *, calls: int, rate: int, hold_ms: int, tmp: Path
) -> tuple[bool, str]:
    t0 = time.time()
    proc = await asyncio.create_subprocess_exec(
        shutil.which("sipp") or "sipp",
        "-sf", str(SCENARIO), "-i", "127.0.0.2", "-p", "5096", "-mp", "20000",
        "-s", "902", f"127.0.0.1:{cfg.asterisk.sip_port}",
        "-m", str(calls), "-l", str(calls), "-r", str(rate), "-d", str(hold_ms),
        "-timeout", "120s", "-nostdin", "-max_socket", "2048",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, cwd=tmp,
    )  # fmt: skip
    _, err = await proc.communicate()
    if proc.returncode != 0:
        return False, f"sipp rc {proc.returncode}: {err.decode()[-300:]}"
    deadline = time.monotonic() + 30 + calls / 10
    while time.monotonic() < deadline:
        cdrs = [r for r in await svc.db.cdrs(limit=100_000) if float(str(r["start_at"])) >= t0 - 1]
        ids = {str(r["call_id"]) for r in cdrs}
        recs = [r for r in await svc.db.recordings() if r["call_id"] in ids]
        if len(cdrs) >= calls and len(recs) >= calls:
            break
        await asyncio.sleep(0.25)
    ok_cdrs = len(cdrs) == calls and all(r["disposition"] == "ANSWERED" for r in cdrs)
    ok_recs = len(recs) == calls and all(r["duration_s"] > 0 and not r["flags"] for r in recs)
    return ok_cdrs and ok_recs, f"{len(cdrs)} CDRs, {len(recs)} recordings of {calls}"


async def bench_sipp(cfg: Config, tmp: Path, quick: bool) -> dict[str, float]:
    async with Database(cfg.database) as db:
        svc = TelephonyService(cfg, db)
        await svc.start()
        try:
            best_concurrent = 0
            levels = [10, 20] if quick else [20, 50, 100, 150, 200]
            with Progress(console=console) as progress:
                task = progress.add_task("concurrent recorded calls", total=len(levels))
                for level in levels:
                    rate = min(level, 50)
                    hold = int((level / rate) * 1000) + 3000  # every call up at the peak
                    ok, why = await sipp_round(
                        svc, cfg, calls=level, rate=rate, hold_ms=hold, tmp=tmp
                    )
                    progress.console.print(
                        f"  {level} concurrent: {'ok' if ok else 'FAIL'} ({why})"
                    )
                    progress.advance(task)
                    if not ok:
                        break
                    best_concurrent = level
                best_rate = 0
                rates = [5, 10] if quick else [5, 10, 20, 40, 60, 80, 100]
                task = progress.add_task("calls per second", total=len(rates))
                for rate in rates:
                    ok, why = await sipp_round(
                        svc, cfg, calls=rate * 5, rate=rate, hold_ms=1000, tmp=tmp
                    )
                    progress.console.print(f"  {rate} calls/s: {'ok' if ok else 'FAIL'} ({why})")
                    progress.advance(task)
                    if not ok:
                        break
                    best_rate = rate
        finally:
            await svc.stop()
    return {"sipp_concurrent_calls_ok": best_concurrent, "sipp_calls_per_second": best_rate}


def write_results(new: dict[str, float]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "latest.json"
    merged: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    merged.update(new)
    path.write_text(json.dumps(dict(sorted(merged.items())), indent=2) + "\n")
    machine = f"{platform.node()} · {platform.processor() or platform.machine()} · {_cores()} cores"
    lines = [
        "# Benchmark results",
        "",
        f"Machine: {machine}; Python {platform.python_version()}; "
        f"written {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}.",
        "",
        "| key | value |",
        "|---|---|",
        *(f"| `{k}` | {v} |" for k, v in sorted(merged.items())),
        "",
        "Notes: `sipp_concurrent_calls_ok` sweeps 20/50/100/150/200 concurrent calls held ~7 s "
        "and `sipp_calls_per_second` 5-100 calls/s for 5 s (1 s calls); each step passes only "
        "if SIPp saw no failure and every call has its CDR and an ingested recording. A value "
        "equal to the top of its sweep is a lower bound. `ami_events_per_second` replays "
        "bench/fixtures/ami_transcript.ami (a real Asterisk 22 capture) in 4 KiB reads. "
        "Voice keys (bench/voice.py): scripted Piper callers in a second process, through "
        "Asterisk; `turn_latency_*` is end of caller speech (utterances cut at their last voiced "
        "frame) -> first agent audio at the caller, 4 calls x 6 turns one at a time (CPU "
        "profile: whisper tiny.en, SmolLM2-135M, Piper joe); the stage keys are medians of the "
        "same turns (`llm_ttft_ms`: each turn's own prompt on the call's cached context; "
        "`llm_first_sentence_ms`: to the first spoken piece, a clause). `turn_overhead_ratio` = "
        "the agent's own answer time / (endpoint wait + STT + LLM first piece + TTS first "
        "audio): the answer is prepared during the endpoint wait (speculation), so the stages "
        "overlap and the ratio is below 1 by the overlap gained; `turn_transport_ms` is the "
        "rest of what the caller waits (Asterisk, RTP, jitter buffers). "
        "`concurrent_ai_calls_p95_under_2s`: largest of 1-4 simultaneous calls (starts 1.3 s "
        "apart) whose P95 turn latency is <= 2 s (`concurrent_N_p95_ms` per level). "
        "Figures are from one machine shared with other work: compare ratios, not absolutes.",
        "`stt_rtf_batch`: post-call transcription of a ~25 s caller leg (decrypt in memory, "
        "whisper-base with word timestamps on half the cores, seal, index, store) in seconds "
        "per audio second; `stt_rtf_vs_bare`: that ÷ bare faster-whisper on the same plaintext "
        "file with the same model and settings (median of alternated pairs).",
        "",
        *_privacy_notes(merged),
        *_ui_notes(merged),
        *_ops_notes(merged),
        *_maint_notes(merged),
        *_reliability_notes(merged),
    ]
    (RESULTS / "latest.md").write_text("\n".join(lines))


def _privacy_notes(merged: dict[str, Any]) -> list[str]:
    if "privacy_bench_calls" not in merged:
        return []
    from bench import privacy

    return [privacy.notes(int(merged["privacy_bench_calls"])), ""]


def _ui_notes(merged: dict[str, Any]) -> list[str]:
    if "ui_bench_calls" not in merged:
        return []
    from bench import ui

    return [ui.notes(int(merged["ui_bench_calls"]), int(merged.get("ui_bench_transcripts", 0))), ""]


def _maint_notes(merged: dict[str, Any]) -> list[str]:
    if "upgrade_bench_calls" not in merged:
        return []
    from bench import maint

    return [maint.notes(int(merged["upgrade_bench_calls"])), ""]


def _ops_notes(merged: dict[str, Any]) -> list[str]:
    if "metrics_scrape_ms" not in merged:
        return []
    from bench import ops

    return [ops.notes(), ""]


def _reliability_notes(merged: dict[str, Any]) -> list[str]:
    if "fuzz_inputs" not in merged and "soak_duration_s" not in merged:
        return []
    from bench import reliability

    return [reliability.notes(merged), ""]


def _cores() -> int:
    import os

    return os.cpu_count() or 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small sweep (smoke test of the bench)")
    ap.add_argument(
        "--only",
        choices=[
            "telephony",
            "voice",
            "provisioning",
            "egress",
            "privacy",
            "ui",
            "ops",
            "campaign",
            "dialogue",
            "pbx",
            "maint",
            "reliability",
            "fuzz",
        ],
        help="run one group (the others keep their previous figures in latest.json)",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="callvault-bench-") as td:
        tmp = Path(td)
        cfg = bench_config(tmp / "state")
        cfg = replace(cfg, recordings_dir=tmp / "recordings")
        render.write(cfg, render.render(cfg))
        results: dict[str, float] = {}
        if args.only in (None, "telephony"):
            console.print("[bold]Asterisk sandbox start")
            results["asterisk_sandbox_start_s"] = bench_sandbox_start(cfg, 3 if args.quick else 5)
            console.print(f"  median {results['asterisk_sandbox_start_s']} s")
            console.print("[bold]AMI event parsing")
            results["ami_events_per_second"] = bench_ami_parse(3 if args.quick else 5)
            console.print(f"  median {results['ami_events_per_second']} events/s")
            console.print(
                "[bold]SIPp sweeps (recorded line 902, appliance writing CDRs + recordings)"
            )
            results.update(asyncio.run(bench_sipp(cfg, tmp, args.quick)))
        if args.only in (None, "voice"):
            from bench import voice

            console.print("[bold]Voice agent turns through Asterisk (scripted caller)")
            sandbox(cfg, "up")
            voice_results = voice.run(cfg, tmp, args.quick)
            console.print(voice_results)
            results.update(voice_results)
            from bench import transcribe

            console.print("[bold]Post-call transcription vs bare faster-whisper")
            stt_results = transcribe.run(cfg, tmp, args.quick)
            console.print(stt_results)
            results.update(stt_results)
        if args.only in (None, "provisioning"):
            from bench import provisioning

            console.print("[bold]Provisioning: systemd exposure, playbook on a fresh sid rootfs")
            prov = provisioning.run()
            console.print(prov)
            # A negative figure means "not measured yet": leave the key out rather than report it.
            results.update({k: v for k, v in prov.items() if v >= 0})
        if args.only in (None, "provisioning", "egress"):
            from bench import egress

            console.print("[bold]Egress: a call with the box in a namespace (bench/egress.py)")
            results.update(egress.run(log=lambda m: console.print(m, markup=False)))
        if args.only in (None, "privacy"):
            from bench import privacy

            console.print("[bold]Privacy: DSAR lookup, erasure, export, encryption, retention")
            console.print(privacy.run(results, quick=args.quick))
        if args.only in (None, "campaign"):
            from bench import campaign

            console.print("[bold]Campaigns: lead import, dials to a SIPp callee")
            sandbox(cfg, "up")
            console.print(campaign.run(cfg, tmp, results, quick=args.quick))
        if args.only in (None, "ui"):
            from bench import ui

            console.print("[bold]Admin UI and API: call list, search, API requests, screenshots")
            console.print(ui.run(results, quick=args.quick))
        if args.only in (None, "ops"):
            from bench import ops

            console.print("[bold]Operations: a Prometheus scrape of /api/v1/metrics")
            console.print(ops.run(results, quick=args.quick))
        if args.only in (None, "dialogue"):
            from bench import dialogue

            console.print("[bold]Dialogue: scripted callers on the playbook line (text, audio)")
            dialogue_results = dialogue.run(cfg, quick=args.quick)
            console.print(dialogue_results)
            results.update(dialogue_results)
        if args.only in (None, "pbx"):
            from bench import pbx

            console.print("[bold]PBX: a configuration change until live in Asterisk")
            # A fresh start: an Asterisk left up by another run may hold another render.
            sandbox(cfg, "down")
            sandbox(cfg, "up")
            pbx_results = pbx.run(cfg, tmp, args.quick)
            console.print(pbx_results)
            results.update(pbx_results)
        if args.only in (None, "maint"):
            from bench import maint

            console.print("[bold]Maintenance: `callvault upgrade` on the synthetic store")
            console.print(maint.run(results, quick=args.quick))
        if args.only in (None, "fuzz"):
            from bench import fuzz

            console.print("[bold]Fuzzing: AMI, CDR file, config, SIP headers, uploads, export")
            console.print(fuzz.bench(results, quick=args.quick, log=console.print))
        if args.only in (None, "reliability"):
            from bench import reliability

            console.print("[bold]Reliability: load sweep, faults, soak, security checks")
            log = lambda m: console.print(m, markup=False)  # noqa: E731
            console.print(reliability.run(cfg, tmp, results, quick=args.quick, log=log))
    write_results(results)
    console.print_json(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
