"""`callvault demo`: Asterisk up, the appliance serving, a scripted desk phone calls the AI line.

What it shows is real: the phone registers to Asterisk over SIP, calls the line, hears the
agent's greeting and says something (a tone sequence); the appliance writes the CDR and takes
the recordings; the demo prints both.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from appliance.config import Config, LineConfig
from appliance.errors import CallvaultError
from appliance.models.manifest import ModelError
from appliance.server import Appliance, registrar_host
from appliance.store import Database
from appliance.telephony import render
from appliance.telephony.audio import rms_dbfs, tone, voiced_seconds
from appliance.telephony.greeter import GreetAndRecord, Heard
from appliance.telephony.sip import PjRuntime, SipPhone

if TYPE_CHECKING:
    from appliance.voice.agent import Conversation
    from appliance.voice.engines import VoiceEngines

CDR_FIELDS = (
    ("calling number", "calling_number"),
    ("caller ID name", "caller_name"),
    ("dialed number", "dialed_number"),
    ("direction", "direction"),
    ("line", "line"),
    ("start", "start_at"),
    ("answer", "answer_at"),
    ("end", "end_at"),
    ("duration (s)", "duration_s"),
    ("billable (s)", "billable_s"),
    ("disposition", "disposition"),
    ("hangup cause", "hangup_cause"),
    ("hangup cause text", "hangup_cause_text"),
    ("channel", "channel"),
    ("destination channel", "dest_channel"),
)
SANDBOX = Path(__file__).resolve().parents[2] / "asterisk" / "sandbox"


def _ts(value: object) -> str:
    if value is None:
        return "-"
    return datetime.fromtimestamp(float(str(value))).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _caller_speech() -> bytes:
    # Three "words" with pauses: something the recording and the agent can both be checked on.
    gap = b"\x00\x00" * 1600
    return tone(523.0, 0.6) + gap + tone(659.0, 0.6) + gap + tone(784.0, 0.8)


def _start_asterisk(cfg: Config) -> float:
    render.write(cfg, render.render(cfg))
    t0 = time.monotonic()
    if cfg.asterisk.sandbox:
        env_cmd = ["env", f"CALLVAULT_ROOTFS={cfg.asterisk.root}", str(SANDBOX)]
        subprocess.run([*env_cmd, "down"], check=False, capture_output=True)
        subprocess.run([*env_cmd, "up"], check=True)
    return time.monotonic() - t0


@dataclass
class DemoCall:
    received: bytes = b""
    heard: list[Heard] = field(default_factory=list)
    conversations: list[Conversation] = field(default_factory=list)
    cdrs: list[dict[str, object]] = field(default_factory=list)
    recordings: list[dict[str, Any]] = field(default_factory=list)


def _load_voice(cfg: Config, console: Console) -> VoiceEngines | None:
    try:
        from appliance.voice.engines import VoiceEngines

        return VoiceEngines.load(cfg)
    except (ModelError, ImportError) as exc:
        console.print(f"[yellow]voice models unavailable ({exc}); the line plays its greeting")
        return None


async def _place_call(cfg: Config, console: Console, line: LineConfig) -> DemoCall:
    ext = cfg.extensions[0]
    out = DemoCall()
    engines = _load_voice(cfg, console)
    async with (
        PjRuntime(bind_host=cfg.agent.bind, bind_port=0) as runtime,
        Database(cfg.database) as db,
    ):
        app = Appliance(
            cfg, db, runtime=runtime, handler=GreetAndRecord(cfg, on_heard=out.heard.append)
        )
        if engines is not None:
            from appliance.voice.agent import VoiceAgent

            app.agent.handler = VoiceAgent(
                cfg, engines, on_done=out.conversations.append, recorder=app.telephony
            )
        async with app:
            console.print(f"agent registered as PJSIP/{cfg.agent.username}")
            async with SipPhone(
                username=ext.number,
                password=cfg.extension_password(ext),
                registrar_host=registrar_host(cfg),
                registrar_port=cfg.asterisk.sip_port,
                display_name=ext.name,
                runtime=runtime,
            ) as phone:
                console.print(f"desk phone {ext.number} registered; calling {line.extension}")
                call = await phone.dial(line.extension)
                await call.wait_confirmed(timeout=10)
                if engines is None:
                    call.play(_caller_speech())
                    await asyncio.sleep(4.0)
                else:
                    await asyncio.sleep(4.5)  # the agent's greeting
                    said = "Hi, I would like to book an appointment for next Tuesday morning."
                    console.print(f"caller says: {said}")
                    call.play(b"".join(engines.tts.speak(said)))
                    await call.wait_played()
                    await asyncio.sleep(8.0)
                out.received = call.received_pcm()
                await call.hangup()
                await call.wait_ended(timeout=5)
            for _ in range(50):  # the agent's handler finishes just after the hangup
                if out.heard or out.conversations:
                    break
                await asyncio.sleep(0.1)
            ids = [h.call_id for h in out.heard] + [c.call_id for c in out.conversations]
            if not ids:
                return out
            out.cdrs = await app.telephony.wait_cdr(ids[0], timeout_s=10)
            for _ in range(100):
                out.recordings = await db.recordings(ids[0])
                if len(out.recordings) >= len(line.record_legs):
                    break
                await asyncio.sleep(0.1)
    return out


async def run_demo(cfg: Config, console: Console) -> int:
    if not cfg.lines or not cfg.extensions:
        raise CallvaultError("the demo needs at least one line and one extension in the config")
    line = next((ln for ln in cfg.lines if ln.kind == "agent"), cfg.lines[0])
    console.rule("[bold]Callvault demo")
    took = await asyncio.to_thread(_start_asterisk, cfg)
    console.print(f"Asterisk up in {took:.1f}s; AI line {line.name} is extension {line.extension}")
    result = await _place_call(cfg, console, line)
    _report(console, result)
    ok = (
        bool(result.cdrs)
        and len(result.recordings) >= len(line.record_legs)
        and voiced_seconds(result.received) > 0.5
    )
    console.print("[green]demo call OK[/green]" if ok else "[red]demo call incomplete[/red]")
    console.print(f"list CDRs any time with: callvault --config {cfg.source} calls")
    await _admin_ui(cfg, console)
    return 0 if ok else 1


async def _admin_ui(cfg: Config, console: Console) -> None:
    """Leave the admin UI running and say how to log in."""
    from appliance.admin import launch
    from appliance.admin.services import open_services
    from appliance.privacy.cli import operator

    async with open_services(cfg) as svc:
        name, password = await svc.users.demo_login(operator())
    pid = await asyncio.to_thread(launch.ensure_running, cfg)
    console.rule("[bold]Admin UI")
    console.print(f"URL:       {launch.url(cfg)}   (pid {pid}; stop: callvault admin stop)")
    console.print(f"certificate SHA-256 fingerprint: {launch.fingerprint(cfg)}")
    if password is None:
        console.print(f"user:      {name} (log in with the password you chose)")
    else:
        console.print(f"user:      {name}")
        print(f"one-time password: {password}", flush=True)
        console.print("(you choose your own password at the first login)")


def _report(console: Console, result: DemoCall) -> None:
    rx = result.received
    console.print(f"phone heard the agent: {voiced_seconds(rx):.1f}s at {rms_dbfs(rx):.0f} dBFS")
    if result.heard:
        pcm = result.heard[0].pcm
        console.print(
            f"agent heard the caller: {voiced_seconds(pcm):.1f}s at {rms_dbfs(pcm):.0f} dBFS"
        )
    for convo in result.conversations:
        for turn in convo.turns:
            cut = " [interrupted]" if turn.interrupted else ""
            console.print(f"  {turn.at_s:5.1f}s {turn.role:>6}: {turn.text}{cut}")
        for t in convo.timings:
            console.print(
                f"  answer after {t.answer_ms:.0f} ms (endpoint {t.endpoint_wait_ms:.0f}, "
                f"STT {t.stt_ms:.0f}, LLM first sentence {t.llm_first_ms:.0f}, "
                f"TTS first audio {t.tts_first_ms:.0f})"
            )
    ids = [h.call_id for h in result.heard] + [c.call_id for c in result.conversations]
    call_id = ids[0] if ids else "?"
    rows = result.cdrs
    for r in rows:
        table = Table(title=f"CDR {r['uniqueid']} (call {call_id})", show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value")
        for label, key in CDR_FIELDS:
            value = r[key]
            if key.endswith("_at"):
                value = _ts(value)
            table.add_row(label, str(value))
        console.print(table)
    for rec in result.recordings:
        console.print(
            f"recording ({rec['leg']}) {rec['duration_s']:.1f}s "
            f"sha256 {str(rec['sha256'])[:12]}… {rec['path']}"
        )
