"""The one internal request every facade builds: ``Generation``, and the rules for it.

Facades map their protocol's fields onto ``build_generation``'s keyword arguments;
the rules here (model names, the size rule, sampler leniency, seeds, limits) are
applied once, so every protocol behaves the same way.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from . import catalog
from .config import Section
from .errors import InvalidRequest, ModelNotFound

#: Seeds come from the OS, never from (or into) the global ``random`` state.
_seeds = random.SystemRandom()

MAX_SEED = 2**32 - 1
#: Larger sides are refused rather than scaled: no real request asks for them.
MAX_REQUESTED_SIDE = 100_000


@dataclass(frozen=True)
class Rules(Section):
    """The settings requests are held to: models, sizes, limits, defaults."""

    default_model: str
    unknown_models: Literal["fallback", "reject"]
    extra_models: list[str]
    extra_loras: list[str]
    default_size: str
    min_side: int
    max_side: int
    max_pixels: int
    size_multiple: int
    max_images: int
    max_prompt_chars: int
    default_nsfw: bool


class Lora(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    weight: float = 0.7


class Generation(BaseModel):
    """A fully resolved request: every value concrete (the seed too), ready to send."""

    model_config = ConfigDict(frozen=True)
    #: A job's request is a generation or an upscale (``upscaling.Upscale``).
    kind: ClassVar[str] = "generate"

    prompt: str
    negative_prompt: str = ""
    model: str
    width: int
    height: int
    #: The client named no size (or ``auto``): width and height are ``default_size``'s,
    #: and a provider whose models choose their own size is sent none.
    auto_size: bool = False
    n: int = 1
    seed: int
    steps: int = 25
    guidance: float = 7.0
    sampler: str = catalog.DEFAULT_SAMPLER
    clip_skip: int = 2
    loras: tuple[Lora, ...] = ()
    nsfw: bool = False
    #: sha256 of the init image in the store (image-to-image), else None.
    init_image: str | None = None
    strength: float | None = None
    #: sha256 of a mask in the store (white = may change), applied to the results.
    mask: str | None = None

    @property
    def is_img2img(self) -> bool:
        return self.init_image is not None

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def features(self) -> tuple[str, ...]:
        """What the provider must offer to run it."""
        return ("img2img",) if self.is_img2img else ()

    def seeds(self) -> list[int]:
        """The seed of each image: seed, seed+1, … (the A1111 convention)."""
        return [(self.seed + i) % (MAX_SEED + 1) for i in range(self.n)]


class Catalog:
    """The models and LoRAs this daemon offers, and which provider offers each model: the
    built-in Arting ids plus the configured extras (all Arting's) until ``offer`` says
    otherwise. Ids under a catalogue provider's prefix (``studio/…``) are that
    provider's even before its catalogue is known."""

    def __init__(self, rules: Rules, owner: str = "arting") -> None:
        self.models = dict(catalog.MODELS)
        self.models.update({m: m for m in rules.extra_models if m not in self.models})
        if rules.default_model not in self.models:
            self.models[rules.default_model] = rules.default_model
        self.loras = dict(catalog.LORAS)
        self.loras.update({lo: lo for lo in rules.extra_loras if lo not in self.loras})
        self.default_model = rules.default_model
        self.unknown_models = rules.unknown_models
        #: model id → the provider offering it; lower-case prefix → catalogue provider
        self.owners = {m: owner for m in self.models}
        self.prefixes: dict[str, str] = {}
        self._offers = {owner: dict(self.models)}
        self._by_lower = {m.lower(): m for m in self.models}

    def offer(self, provider: str, models: Mapping[str, str], prefix: str = "") -> None:
        """Replace what ``provider`` offers: ids (its ``prefix`` included) → names, listed
        in the order providers first made an offer. With a prefix, every id under it is
        the provider's, listed or not."""
        self._offers[provider] = dict(models)
        self.models = {m: name for offer in self._offers.values() for m, name in offer.items()}
        self.owners = {m: owner for owner, offer in self._offers.items() for m in offer}
        if prefix:
            self.prefixes[prefix.lower()] = provider
        self._by_lower = {m.lower(): m for m in self.models}

    def owner(self, model_id: str) -> str | None:
        """The provider offering ``model_id`` (an id as ``resolve_model`` returns it)."""
        if model_id in self.owners:
            return self.owners[model_id]
        return self._prefixed(model_id.lower())

    def resolve_model(self, name: str | None) -> str:
        """Map a client's model name onto a model id.

        Accepts ids (any case), A1111 titles ("id.safetensors [hash]"), ids under a
        catalogue provider's prefix (that provider judges them), ``<provider>/<model>``
        for any provider's model, and the OpenAI names clients hard-code, which stand
        for the default model.
        """
        if not name:
            return self.default_model
        found = self.find(name)
        if found is not None:
            return found
        key = _strip_title(name).lower()
        if key in catalog.OPENAI_MODEL_NAMES or key.startswith(("dall-e", "gpt-image")):
            return self.default_model
        if self.unknown_models == "fallback":
            return self.default_model
        raise ModelNotFound(f"The model `{name}` does not exist. Known models: "
                            f"{', '.join(self.models)}.", param="model")

    def find(self, name: str) -> str | None:
        """The id ``name`` stands for, if a provider offers it (see ``resolve_model``)."""
        key = _strip_title(name).lower()
        if key in self._by_lower:
            return self._by_lower[key]
        if self._prefixed(key) is not None:
            return _strip_title(name)
        return self._qualified(key)

    def has_model(self, name: str) -> bool:
        return self.find(name) is not None

    def _prefixed(self, key: str) -> str | None:
        return next((provider for prefix, provider in self.prefixes.items()
                     if key.startswith(prefix) and len(key) > len(prefix)), None)

    def _qualified(self, key: str) -> str | None:
        """``relay/relay-model`` → ``relay-model`` when the provider ``relay`` offers it."""
        provider, _, model = key.partition("/")
        if not model:
            return None
        prefix = next((px for px, owner in self.prefixes.items() if owner == provider), "")
        return next((m for m, owner in self.owners.items()
                     if owner == provider and m.lower().removeprefix(prefix) == model), None)


def _strip_title(name: str) -> str:
    """'oneFORALLAnime.safetensors [0123abcd]' → 'oneFORALLAnime'."""
    name = re.sub(r"\s*\[[0-9a-fA-F]+\]\s*$", "", name.strip())
    return re.sub(r"\.(safetensors|ckpt)$", "", name)


def parse_size(value: str | None, rules: Rules) -> tuple[int, int]:
    """'1024x768' → (1024, 768); None, '' and 'auto' → the configured default size."""
    if value is None or value.strip().lower() in ("", "auto"):
        value = rules.default_size
    match = re.fullmatch(r"\s*(\d{1,5})\s*[xX×]\s*(\d{1,5})\s*", value)
    if not match:
        raise InvalidRequest(f"size must be written WIDTHxHEIGHT (like 512x768) or auto; "
                             f"got {value!r}.", param="size")
    return int(match[1]), int(match[2])


def fit_size(width: int, height: int, rules: Rules) -> tuple[int, int]:
    """The size rule: keep the aspect ratio, fit both sides into [min_side, max_side]
    and the area into max_pixels, then round each side to a multiple of size_multiple.

    1024x1024 stays; 1792x1024 becomes 1352x768 (area capped at 1024²); 64x64 becomes 256x256.
    """
    if width <= 0 or height <= 0:
        raise InvalidRequest("width and height must be positive.", param="size")
    if max(width, height) > MAX_REQUESTED_SIDE:
        raise InvalidRequest(f"width and height must be at most {MAX_REQUESTED_SIDE} (sizes "
                             f"are scaled down to max_side and max_pixels).", param="size")
    w, h = float(width), float(height)
    scale = min(1.0, rules.max_side / max(w, h), (rules.max_pixels / (w * h)) ** 0.5)
    w, h = w * scale, h * scale
    grow = max(1.0, rules.min_side / min(w, h))
    w, h = min(w * grow, rules.max_side), min(h * grow, rules.max_side)
    m = rules.size_multiple

    def snap(x: float) -> int:
        return max(m, int(x // m) * m)

    return snap(w), snap(h)


def resolve_sampler(name: str | None, scheduler: str | None = None) -> str:
    """Known names pass (any case). An A1111 scheduler, given apart ("DPM++ 2M" with
    "karras") or as a suffix ("DPM++ 2M Karras"), picks the sampler's Karras variant
    where Arting has one; other schedulers mean the plain sampler. Unknown names fall
    back to the default sampler, as A1111 itself does."""
    by_lower = {s.lower(): s for s in catalog.SAMPLERS}
    base = " ".join((name or "").lower().split())
    chosen = scheduler_name(scheduler)
    for label in _SCHEDULER_SPELLINGS:
        stem = base.removesuffix(" " + label)
        if stem != base and stem in by_lower:
            base, chosen = stem, scheduler_name(label)
            break
    if base not in by_lower:
        return catalog.DEFAULT_SAMPLER
    return by_lower.get(f"{base} karras" if chosen == "karras" else base, by_lower[base])


def scheduler_name(value: str | None) -> str:
    """An A1111 scheduler given by name or label ("karras", "Karras", "SGM Uniform")
    as its name; unknown or empty ones are "automatic", as in A1111."""
    key = (value or "").strip().lower().replace(" ", "_")
    return key if key in catalog.SCHEDULERS else "automatic"


#: Every spelling of every scheduler, longest first, for splitting "DPM++ 2M Karras".
_SCHEDULER_SPELLINGS = sorted({s for name, label in catalog.SCHEDULERS.items()
                               for s in (name, label.lower())}, key=len, reverse=True)

#: The most LoRAs one generation may use (Arting's own page offers three).
MAX_LORAS = 8

_LORA_TAG = re.compile(r"<lora:([^:>]+)(?::([^:>]*))?(?::[^>]*)?>", re.IGNORECASE)


def prompt_loras(prompt: str, known: Mapping[str, str]) -> tuple[str, tuple[Lora, ...], list[str]]:
    """A1111's ``<lora:name:weight>`` prompt tags → (prompt without them, the LoRAs,
    names not found). Names match LoRA ids or display names in any case; a missing
    weight is 1.0 (A1111's). Unknown names are dropped, as A1111 drops them."""
    lookup = {k.lower(): k for k in known}
    lookup.update({v.lower(): k for k, v in known.items()})
    found: list[Lora] = []
    missing: list[str] = []

    def take(match: re.Match) -> str:
        name, weight = match[1].strip(), (match[2] or "").strip()
        lora_id = lookup.get(name.lower())
        if lora_id is None:
            missing.append(name)
            return ""
        try:
            found.append(Lora(id=lora_id, weight=float(weight) if weight else 1.0))
        except ValueError:
            raise InvalidRequest(f"The weight of <lora:{name}:{weight}> is not a number.",
                                 param="prompt") from None
        return ""

    cleaned = re.sub(r",{2,}", ",", re.sub(r"[ \t]+,", ",", _LORA_TAG.sub(take, prompt)))
    return re.sub(r"[ \t]{2,}", " ", cleaned).strip(" \t,"), tuple(found), missing


def parse_loras(loras: Any = None, lora_ids: Any = None,
                lora_weight: Any = None) -> tuple[Lora, ...]:
    """LoRAs as a list of {id, weight} (or "id:weight" strings), or Arting's own pair of
    comma-separated strings; one weight for several ids applies to all of them."""
    out: list[Lora] = []
    if loras:
        if not isinstance(loras, list):
            raise InvalidRequest("loras must be a list of {id, weight}.", param="loras")
        _count_loras(len(loras))
        for item in loras:
            if isinstance(item, str):
                lid, _, weight = item.partition(":")
                out.append(Lora(id=lid.strip(),
                                weight=_weight(weight, "loras") if weight else 0.7))
            elif isinstance(item, Mapping) and item.get("id"):
                out.append(Lora(id=str(item["id"]),
                                weight=_weight(item.get("weight", 0.7), "loras")))
            else:
                raise InvalidRequest("each LoRA needs an id.", param="loras")
    if lora_ids:
        ids = [x.strip() for x in str(lora_ids).split(",") if x.strip()]
        _count_loras(len(out) + len(ids), "lora_ids")
        weights = [_weight(x, "lora_weight") for x in str(lora_weight or "0.7").split(",")
                   if x.strip()] or [0.7]
        if len(weights) not in (1, len(ids)):
            raise InvalidRequest("lora_weight needs one weight, or one per LoRA in lora_ids.",
                                 param="lora_weight")
        out.extend(Lora(id=i, weight=weights[k if len(weights) > 1 else 0])
                   for k, i in enumerate(ids))
    return tuple(out)


def _count_loras(count: int, param: str = "loras") -> None:
    if count > MAX_LORAS:
        raise InvalidRequest(f"A generation may use at most {MAX_LORAS} LoRAs; got {count}.",
                             param=param)


def _weight(value: Any, param: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InvalidRequest(f"LoRA weights must be numbers; got {value!r:.40}.",
                             param=param) from None


def new_seed() -> int:
    return _seeds.randint(0, MAX_SEED)


def build_generation(rules: Rules, models: Catalog, *, prompt: Any,
                     negative_prompt: str | None = None, model: str | None = None,
                     size: str | None = None, width: int | None = None,
                     height: int | None = None, n: int = 1, seed: int | None = None,
                     steps: int | None = None, guidance: float | None = None,
                     sampler: str | None = None, clip_skip: int | None = None,
                     loras: Iterable[Lora] = (), nsfw: bool | None = None,
                     init_image: str | None = None, strength: float | None = None,
                     mask: str | None = None) -> Generation:
    """Validate a facade's request against the limits and resolve every default."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidRequest("prompt is required and must be a non-empty string.",
                             param="prompt")
    if len(prompt) > rules.max_prompt_chars:
        raise InvalidRequest(f"prompt is {len(prompt)} characters long; the limit is "
                             f"{rules.max_prompt_chars} (max_prompt_chars).", param="prompt")
    if not 1 <= n <= rules.max_images:
        raise InvalidRequest(f"n must be between 1 and {rules.max_images} (max_images); "
                             f"got {n}.", param="n")
    auto_size = (width is None or height is None) and \
        (size is None or size.strip().lower() in ("", "auto"))
    if width is None or height is None:
        width, height = parse_size(size, rules)
    width, height = fit_size(width, height, rules)
    if seed is None or seed < 0:
        seed = new_seed()
    if steps is not None and not 1 <= steps <= 150:
        raise InvalidRequest("steps must be between 1 and 150.", param="steps")
    if guidance is not None and not 0 <= guidance <= 30:
        raise InvalidRequest("guidance must be between 0 and 30.", param="guidance")
    if clip_skip is not None and not 1 <= clip_skip <= 12:
        raise InvalidRequest("clip_skip must be between 1 and 12.", param="clip_skip")
    if strength is not None and not 0 <= strength <= 1:
        raise InvalidRequest("strength must be between 0 and 1.", param="strength")
    loras = tuple(loras)
    _count_loras(len(loras))
    for lora in loras:
        if not 0 <= lora.weight <= 2 or not lora.id or "," in lora.id:
            raise InvalidRequest(f"LoRA {lora.id!r}: ids may not contain commas and weights "
                                 "must be between 0 and 2.", param="loras")
    return Generation(
        prompt=prompt.strip(), negative_prompt=(negative_prompt or "").strip(),
        model=models.resolve_model(model), width=width, height=height, auto_size=auto_size,
        n=n,
        seed=seed % (MAX_SEED + 1), steps=steps or 25,
        guidance=7.0 if guidance is None else guidance,
        sampler=resolve_sampler(sampler), clip_skip=clip_skip or 2, loras=loras,
        nsfw=rules.default_nsfw if nsfw is None else nsfw,
        init_image=init_image,
        strength=(0.7 if strength is None else strength) if init_image else None,
        mask=mask if init_image else None)

