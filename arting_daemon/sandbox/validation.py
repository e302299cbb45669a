"""Checks on create/get bodies, with the field types public clients send (§3.1).

Integers must be JSON integers (not strings, not booleans), ``lora_ids`` must be a
comma-separated string, ``lora_weight`` too or a number (one client sends one, and
Arting accepted it, §11), ``is_nsfw`` a boolean. Fields the
sandbox does not know are ignored, as the real server appears to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import envelope as E
from .envelope import ApiError
from .models import SandboxConfig


@dataclass
class CreateSpec:
    """A create body that passed every check, with defaults filled in."""

    prompt: str
    model: str
    samples: int
    width: int
    height: int
    seed: int
    is_nsfw: bool
    image_url: str | None = None
    strength: float = 1.0


def parse_create(body: Any, config: SandboxConfig, img2img: bool = False) -> CreateSpec:
    body = _object(body)
    prompt = _field(body, "prompt", str, "a string", required=True)
    if not prompt.strip():
        raise ApiError(E.EMPTY_PROMPT, "prompt must not be empty")
    for name in ("negative_prompt", "sampler"):
        _field(body, name, str, "a string")
    for name in ("steps", "clip_skip"):
        _field(body, name, int, "an integer")
    _field(body, "guidance", (int, float), "a number")
    spec = CreateSpec(
        prompt=prompt,
        model=_model(body, config),
        samples=_ranged(body, "samples", 1, 1, config.max_samples, E.BAD_SAMPLES),
        width=_ranged(body, "width", 512, config.min_side, config.max_side, E.BAD_SIZE),
        height=_ranged(body, "height", 768, config.min_side, config.max_side, E.BAD_SIZE),
        seed=_seed(body),
        is_nsfw=_field(body, "is_nsfw", bool, "a boolean", default=False),
    )
    weight = _field(body, "lora_weight", (str, int, float), "a string or a number", default="")
    _check_loras(_field(body, "lora_ids", str, "a string", default=""),
                 weight if isinstance(weight, str) else f"{weight:g}")
    if img2img:
        spec.image_url = _field(body, "image_url", str, "a string", required=True)
        spec.strength = float(_field(body, "strength", (int, float), "a number", required=True))
        if not 0.0 <= spec.strength <= 1.0:
            raise ApiError(E.BAD_STRENGTH, "strength must be between 0 and 1")
    return spec


def parse_get(body: Any) -> str:
    return _field(_object(body), "request_id", str, "a string", required=True)


def _object(body: Any) -> dict:
    if not isinstance(body, dict):
        raise ApiError(E.BAD_BODY, "body must be a JSON object")
    return body


def _field(body: dict, name: str, types: type | tuple[type, ...], what: str,
           required: bool = False, default: Any = None) -> Any:
    """``body[name]`` if it has the right JSON type; booleans never count as numbers."""
    if name not in body:
        if required:
            raise ApiError(E.BAD_TYPE, f"{name} is required")
        return default
    value = body[name]
    if not isinstance(value, types) or (isinstance(value, bool) and types is not bool):
        raise ApiError(E.BAD_TYPE, f"{name} must be {what}")
    return value


def _ranged(body: dict, name: str, default: int, low: int, high: int, code: int) -> int:
    value = _field(body, name, int, "an integer", default=default)
    if not low <= value <= high:
        raise ApiError(code, f"{name} must be between {low} and {high}")
    return value


def _model(body: dict, config: SandboxConfig) -> str:
    """The model to use; "" (or none) falls back to the first allowed model."""
    model = _field(body, "model_id", str, "a string", default="")
    if model == "" and config.allowed_models:
        return config.allowed_models[0]
    if model not in config.allowed_models:
        raise ApiError(E.BAD_MODEL, "Model not supported")
    return model


def _seed(body: dict) -> int:
    seed = _field(body, "seed", int, "an integer", default=-1)
    if seed < -1:
        raise ApiError(E.BAD_TYPE, "seed must be -1 (random) or a non-negative integer")
    return seed


def _check_loras(ids: str, weights: str) -> None:
    """Weights must be numbers, one per LoRA or one for all; with no LoRA they are ignored."""
    id_list = _split(ids)
    weight_list = _split(weights)
    for weight in weight_list:
        try:
            float(weight)
        except ValueError:
            raise ApiError(E.BAD_LORA, f"lora_weight {weight!r} is not a number") from None
    if id_list and len(weight_list) not in (1, len(id_list)):
        raise ApiError(E.BAD_LORA, f"lora_weight has {len(weight_list)} values for "
                                   f"{len(id_list)} lora_ids")


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]
