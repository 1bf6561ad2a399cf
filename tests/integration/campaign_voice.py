"""Voice helpers for the campaign integration tests: the line's Piper voice (to speak as a
lead) and the campaign report schema the campaign's line reports with."""

from __future__ import annotations

from pathlib import Path

from appliance.config import Config
from appliance.voice.tts import Tts

CAMPAIGN_SCHEMA = (
    Path(__file__).resolve().parents[2] / "appliance" / "campaign" / "campaign_report_schema.json"
)


def piper_voice(cfg: Config) -> Tts:
    """The active model profile's Piper voice (the one the agent speaks with)."""
    from appliance.models.commands import active_profile
    from appliance.models.manifest import load_manifest
    from appliance.models.store import ModelStore

    manifest = load_manifest()
    entry = manifest.profile(active_profile(cfg, manifest))["tts"]
    onnx = next(f.name for f in entry.files if f.name.endswith(".onnx"))
    return Tts(ModelStore(cfg.models.dir, manifest).file(entry.name, onnx))
