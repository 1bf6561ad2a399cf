"""Loading the models once per process, on the device each engine can use."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from appliance.config import Config
from appliance.models.commands import active_profile
from appliance.models.devices import detect
from appliance.models.manifest import ModelError, load_manifest
from appliance.models.store import ModelStore
from appliance.voice.llm import Llm
from appliance.voice.stt import Stt
from appliance.voice.tts import Tts

log = logging.getLogger(__name__)


@dataclass
class VoiceEngines:
    stt: Stt
    llm: Llm
    tts: Tts
    vad_model: Path
    profile: str
    load_seconds: float

    @classmethod
    def load(cls, cfg: Config) -> VoiceEngines:
        """Load every model of the active profile; ModelError says which one is unusable."""
        t0 = time.monotonic()
        manifest = load_manifest()
        store = ModelStore(cfg.models.dir, manifest)
        profile = active_profile(cfg, manifest)
        models = manifest.profile(profile)
        devices = detect()
        for slot, entry in models.items():
            status = store.quick_status(entry)
            if not status.installed:
                raise ModelError(
                    f"model {entry.name} ({slot}) is unusable: {status.problem} "
                    "(run `callvault models install`)"
                )
        stt_entry, llm_entry, tts_entry = models["stt_live"], models["llm"], models["tts"]
        try:
            stt = Stt(store.path(stt_entry.name), device=devices.for_engine(stt_entry.format))
            gguf = next(f.name for f in llm_entry.files if f.name.endswith(".gguf"))
            llm = Llm(store.file(llm_entry.name, gguf), gpu=devices.for_engine("gguf") == "cuda")
            onnx = next(f.name for f in tts_entry.files if f.name.endswith(".onnx"))
            tts = Tts(store.file(tts_entry.name, onnx))
        except (RuntimeError, ValueError, OSError) as exc:
            # A corrupt file that still has the right size fails here, inside the engine.
            raise ModelError(f"loading the {profile} models failed: {exc}") from exc
        vad_entry = models["vad"]
        vad = store.file(vad_entry.name, vad_entry.files[0].name)
        took = time.monotonic() - t0
        log.warning("voice models loaded (profile %s) in %.1fs", profile, took)
        return cls(stt=stt, llm=llm, tts=tts, vad_model=vad, profile=profile, load_seconds=took)
