"""Which device each engine can use here: CUDA when the engine's build and a GPU allow it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Devices:
    ctranslate2_cuda: int
    """GPUs CTranslate2 (faster-whisper) can use; 0 without a CUDA build or a GPU."""
    llama_gpu_offload: bool
    """llama.cpp was built with a GPU backend (e.g. -DGGML_CUDA=on)."""
    onnx_cuda: bool
    """onnxruntime offers CUDAExecutionProvider (Piper, Silero)."""

    def for_engine(self, fmt: str) -> str:
        if fmt == "ctranslate2":
            return "cuda" if self.ctranslate2_cuda else "cpu"
        if fmt == "gguf":
            return "cuda" if self.llama_gpu_offload else "cpu"
        if fmt in {"onnx", "piper-onnx"}:
            return "cuda" if self.onnx_cuda else "cpu"
        return "cpu"

    @property
    def any_gpu(self) -> bool:
        return bool(self.ctranslate2_cuda) or self.llama_gpu_offload


@cache
def detect() -> Devices:
    """Probe once per process; a probe that fails means that engine runs on the CPU."""
    ct2 = 0
    try:
        import ctranslate2

        ct2 = int(ctranslate2.get_cuda_device_count())
    except (ImportError, RuntimeError) as exc:
        log.info("CTranslate2 CUDA probe: %s", exc)
    llama = False
    try:
        import llama_cpp

        llama = bool(llama_cpp.llama_supports_gpu_offload())
    except (ImportError, AttributeError, OSError) as exc:
        log.info("llama.cpp GPU probe: %s", exc)
    onnx = False
    try:
        import onnxruntime

        onnx = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    except ImportError as exc:
        log.info("onnxruntime probe: %s", exc)
    return Devices(ctranslate2_cuda=ct2, llama_gpu_offload=llama, onnx_cuda=onnx)
