"""Loading the models once per process, on the device each engine can use.

All engines share one compute gate (appliance.voice.gate): one model step at a time, each using
every core, with the steps a caller is waiting for served first.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from appliance.config import Config, LineConfig
from appliance.models.commands import active_profile
from appliance.models.devices import detect
from appliance.models.manifest import Manifest, ModelEntry, ModelError, load_manifest
from appliance.models.store import ModelStore
from appliance.voice.gate import ComputeGate, CpuWatch
from appliance.voice.languages import ENGLISH, LinePlan, plan_line
from appliance.voice.llm import Llm
from appliance.voice.stt import Stt
from appliance.voice.tts import Tts

log = logging.getLogger(__name__)

REQUIRED_SLOTS = ("stt_live", "llm", "tts", "vad")


def cpu_cores() -> int:
    return max(1, min(len(os.sched_getaffinity(0)), 16))


def token_threads(cores: int) -> int:
    """Threads of an LLM token or a Piper sentence: every core, narrowed to one while other
    processes are busy (appliance.voice.gate); CALLVAULT_VOICE_THREADS caps it (e.g. 1)."""
    env = os.environ.get("CALLVAULT_VOICE_THREADS", "")
    if not env:
        return cores
    try:
        return max(1, min(int(env), cores))
    except ValueError:
        raise ModelError(f"CALLVAULT_VOICE_THREADS={env!r} is not a number") from None


@dataclass
class VoiceEngines:
    stt: Stt
    """The profile's live Whisper (English lines)."""
    llm: Llm
    tts: Tts
    """The profile's default voice (English)."""
    vad_model: Path
    profile: str
    load_seconds: float
    gate: ComputeGate = field(default_factory=ComputeGate)
    plans: dict[str, LinePlan] = field(default_factory=dict)
    """Per AI line: language, Whisper model and voice (with what fell back to English)."""
    manifest: Manifest | None = None
    store: ModelStore | None = None
    threads: int = 1
    """Threads of an LLM token and a Piper sentence at most (Whisper uses every core)."""
    device: str = "cpu"
    _stts: dict[str, Stt] = field(default_factory=dict)
    _voices: dict[str, Tts] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def load(cls, cfg: Config) -> VoiceEngines:
        """Load every model the AI lines need; ModelError says which one is unusable."""
        t0 = time.monotonic()
        manifest = load_manifest()
        store = ModelStore(cfg.models.dir, manifest)
        profile = active_profile(cfg, manifest)
        models = manifest.profile(profile)
        devices = detect()
        for slot in REQUIRED_SLOTS:
            entry = models[slot]
            status = store.quick_status(entry)
            if not status.installed:
                raise ModelError(
                    f"model {entry.name} ({slot}) is unusable: {status.problem} "
                    "(run `callvault models install`)"
                )
        cores = cpu_cores()
        gate = ComputeGate(cores, watch=CpuWatch() if cores > 1 else None)
        threads = token_threads(cores)
        stt_entry, llm_entry, tts_entry = models["stt_live"], models["llm"], models["tts"]
        device = devices.for_engine(stt_entry.format)
        try:
            stt = Stt(store.path(stt_entry.name), device=device, threads=cores, gate=gate)
            gguf = next(f.name for f in llm_entry.files if f.name.endswith(".gguf"))
            llm = Llm(
                store.file(llm_entry.name, gguf),
                gpu=devices.for_engine("gguf") == "cuda",
                threads=threads,
                gate=gate,
            )
            tts = _voice(store, tts_entry, threads, gate)
            llm.warm(cfg.agent.max_calls)  # one llama.cpp context per simultaneous call
        except (RuntimeError, ValueError, OSError) as exc:
            # A corrupt file that still has the right size fails here, inside the engine.
            raise ModelError(f"loading the {profile} models failed: {exc}") from exc
        vad_entry = models["vad"]
        vad = store.file(vad_entry.name, vad_entry.files[0].name)
        engines = cls(
            stt=stt,
            llm=llm,
            tts=tts,
            vad_model=vad,
            profile=profile,
            load_seconds=0.0,
            gate=gate,
            manifest=manifest,
            store=store,
            threads=threads,
            device=device,
        )
        engines._stts[stt_entry.name] = stt
        engines._voices[tts_entry.name] = tts

        def installed(entry: ModelEntry) -> bool:
            return store.quick_status(entry).installed

        for line in cfg.lines:
            if line.kind != "agent":
                continue
            plan = plan_line(manifest, models, line, installed)
            for problem in plan.problems:
                log.error("voice agent: %s", problem)
            try:
                engines.stt_for(plan)
                engines.voice(plan.voice)
            except ModelError as exc:
                log.error("voice agent: line %s: %s; the line speaks English", line.name, exc)  # noqa: TRY400 - the reason is the message
                plan = LinePlan(
                    line.name, ENGLISH, stt_entry.name, tts_entry.name, (*plan.problems, str(exc))
                )
            engines.plans[line.name] = plan
        engines.load_seconds = time.monotonic() - t0
        log.warning("voice models loaded (profile %s) in %.1fs", profile, engines.load_seconds)
        return engines

    def plan(self, line: LineConfig | None) -> LinePlan:
        if line is not None and line.name in self.plans:
            return self.plans[line.name]
        name = line.name if line is not None else "(unknown line)"
        return LinePlan(name, ENGLISH, "", "")

    def stt_for(self, plan: LinePlan) -> Stt:
        """The Whisper model of a line, loaded on first use (the multilingual one is bigger)."""
        if not plan.stt:
            return self.stt
        with self._lock:
            if plan.stt not in self._stts:
                assert self.store is not None and self.manifest is not None
                path = self.store.path(self.manifest.model(plan.stt).name)
                try:
                    # Sessions pass their language (or None: detect) on every transcription.
                    self._stts[plan.stt] = Stt(
                        path, device=self.device, language=None, threads=self.gate.cores,
                        gate=self.gate,
                    )  # fmt: skip
                except (RuntimeError, ValueError, OSError) as exc:
                    raise ModelError(f"loading {plan.stt} failed: {exc}") from exc
            return self._stts[plan.stt]

    def voice(self, name: str) -> Tts:
        """A manifest voice by name, loaded on first use."""
        if not name:
            return self.tts
        with self._lock:
            if name not in self._voices:
                assert self.store is not None and self.manifest is not None
                self._voices[name] = _voice(
                    self.store, self.manifest.model(name), self.threads, self.gate
                )
            return self._voices[name]

    def voice_for_language(self, language: str) -> Tts | None:
        """The installed voice for a detected language, or None (the caller hears English)."""
        if self.manifest is None or self.store is None:
            return self.tts if language == ENGLISH else None
        entry = self.manifest.voice_for(language)
        if entry is None or not self.store.quick_status(entry).installed:
            return None
        return self.voice(entry.name)


def _voice(store: ModelStore, entry: ModelEntry, threads: int, gate: ComputeGate) -> Tts:
    onnx = next((f.name for f in entry.files if f.name.endswith(".onnx")), None)
    if onnx is None:
        raise ModelError(f"voice {entry.name} has no .onnx file in the manifest")
    try:
        return Tts(store.file(entry.name, onnx), threads=threads, gate=gate)
    except (RuntimeError, ValueError, OSError) as exc:
        raise ModelError(f"loading voice {entry.name} failed: {exc}") from exc
