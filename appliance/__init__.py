"""Callvault: an on-prem AI telephony appliance."""

import os

# onnxruntime (Silero VAD, Piper, faster-whisper's VAD filter) sends usage telemetry to
# mobile.events.data.microsoft.com and keeps a device id and an event queue under
# ~/.cache/Microsoft unless this is set before it loads. Nothing leaves the box: set here, the
# first import of any appliance module, so no entry point can miss it (tests/integration/
# test_egress.py caught the lookups).
os.environ["ORT_DISABLE_TELEMETRY"] = "1"

__version__ = "0.1.0"
