"""The autoui model: vision encoder + projector + decoder (LLaVA layout), configs and weight I/O.

Heavy submodules (torch) load on first use of their names, so `import autoui.model` stays cheap
for code that only needs the tokenizer or configs.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ConfigError": "config", "DecoderConfig": "config", "ModelConfig": "config", "VisionConfig": "config",
    "list_presets": "config", "load_preset": "config",
    "AutoUIModel": "vlm", "IGNORE_INDEX": "vlm",
    "WeightsError": "weights", "load_decoder_from_hf": "weights", "load_vision_from_hf": "weights",
    "model_from_hf": "weights",
    "ExportError": "hf_export", "export_hf": "hf_export",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'autoui.model' has no attribute {name!r}")
    return getattr(importlib.import_module(f"autoui.model.{module}"), name)
