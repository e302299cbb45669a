"""The workflow a job is sent as: a ComfyUI graph in its API format, in which the request's
values are filled in where a string input is exactly one of the placeholders
(``"$prompt"``, ``"$negative_prompt"``, ``"$seed"``, ``"$width"``, ``"$height"``,
``"$steps"``, ``"$cfg"``, ``"$model"``, ``"$batch_size"``, ``"$sampler"``,
``"$scheduler"``). The built-in one is ComfyUI's default text-to-image graph; an
operator's own (``workflow = "my-workflow.json"``, exported with *Save (API Format)*)
may use any nodes, so long as a ``SaveImage`` node makes the pictures."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

PLACEHOLDERS = ("prompt", "negative_prompt", "seed", "width", "height", "steps", "cfg",
                "model", "batch_size", "sampler", "scheduler")

DEFAULT: dict[str, Any] = {
    "3": {"class_type": "KSampler", "inputs": {
        "seed": "$seed", "steps": "$steps", "cfg": "$cfg", "sampler_name": "$sampler",
        "scheduler": "$scheduler", "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0],
        "negative": ["7", 0], "latent_image": ["5", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "$model"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {
        "width": "$width", "height": "$height", "batch_size": "$batch_size"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "$prompt", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "$negative_prompt",
                                                     "clip": ["4", 1]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "arting-2api",
                                                "images": ["8", 0]}},
}


def load(path: Path | None) -> dict[str, Any]:
    """The template: the file's (checked to be a graph in API format), or the default."""
    if path is None:
        return DEFAULT
    graph = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(graph, dict) or not all(
            isinstance(n, dict) and "class_type" in n for n in graph.values()):
        raise ValueError(f"{path} is no workflow in API format (export it with "
                         "Save (API Format))")
    return graph


def filled(template: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``template`` with each placeholder replaced by its value."""
    graph = copy.deepcopy(template)
    for node in graph.values():
        inputs = node.get("inputs", {})
        for key, value in inputs.items():
            if isinstance(value, str) and value.startswith("$") and value[1:] in values:
                inputs[key] = values[value[1:]]
    return graph
