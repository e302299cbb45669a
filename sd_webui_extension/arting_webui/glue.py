"""Every touch of SD-WebUI's own modules, each guarded, so A1111 1.6–1.10 and Forge
(whose ``Processed``, ``p`` and ``shared.state`` differ a little) share one code path.

Host modules are imported inside the functions: importing this package costs nothing
and needs no SD-WebUI (the tests put stand-ins into ``sys.modules``).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

MAX_SEED = 2**32 - 1


def shared() -> Any:
    from modules import shared as host_shared
    return host_shared


def state() -> Any:
    return shared().state


def opt(key: str, default: Any) -> Any:
    """A setting, or ``default`` when this host (or this start, e.g. API-only, where
    extension settings are never registered) does not have it."""
    value = getattr(getattr(shared(), "opts", None), key, None)
    return default if value is None else value


def cmd_opt(name: str) -> Any:
    return getattr(getattr(shared(), "cmd_opts", None), name, None)


def models_file() -> Path | None:
    """Where the extension remembers the daemon's models between starts (the WebUI's
    data directory), or None where the host does not say."""
    try:
        from modules import paths_internal
    except ImportError:
        return None
    data = getattr(paths_internal, "data_path", None)
    return Path(data) / "arting-2api" / "models.json" if data else None


def fixed_seed(seed: Any) -> int:
    """-1 (or empty) → a random seed, as the host does it."""
    from modules import processing
    host = getattr(processing, "get_fixed_seed", None)
    if host is not None:
        return int(host(seed))
    try:
        seed = int(seed)
    except (TypeError, ValueError):
        seed = -1
    return random.randint(0, MAX_SEED - 1) if seed < 0 else seed


def prompts(p: Any) -> tuple[list[str], list[str]]:
    """One prompt and one negative prompt per image, styles applied.

    ``p.setup_prompts()`` does exactly this where it exists; elsewhere the styles are
    applied here with the host's style database.
    """
    total = p.n_iter * p.batch_size
    if callable(getattr(p, "setup_prompts", None)):
        p.setup_prompts()
        return list(p.all_prompts), list(p.all_negative_prompts)
    positive = p.prompt if isinstance(p.prompt, list) else [p.prompt] * total
    negative = (p.negative_prompt if isinstance(p.negative_prompt, list)
                else [p.negative_prompt or ""] * len(positive))
    styles = getattr(shared(), "prompt_styles", None)
    chosen = getattr(p, "styles", None) or []
    if styles is not None and chosen:
        positive = [styles.apply_styles_to_prompt(x, chosen) for x in positive]
        negative = [styles.apply_negative_styles_to_prompt(x, chosen) for x in negative]
    p.all_prompts, p.all_negative_prompts = positive, negative
    return list(positive), list(negative)


def should_save(p: Any) -> bool:
    """Whether the user's settings ask for samples on disk (for the API: save_images)."""
    if callable(getattr(p, "save_samples", None)):
        return bool(p.save_samples())
    return bool(opt("samples_save", True)) and not getattr(p, "do_not_save_samples", False)


def save_image(p: Any, image: Any, seed: int, prompt: str, infotext: str) -> None:
    from modules import images
    images.save_image(image, p.outpath_samples, "", seed, prompt,
                      opt("samples_format", "png"), info=infotext, p=p)


def attach_infotext(image: Any, infotext: str) -> None:
    """What the host does to each image, so the gallery's copy carries the infotext."""
    if opt("enable_pnginfo", True):
        image.info["parameters"] = infotext


def resize_image(image: Any, width: int, height: int, upscaler: str) -> Any:
    """The image at ``width``×``height`` through the WebUI's upscaler of that name (as its
    Hires. fix does: upscaled, then resized to the exact size)."""
    from modules import images
    return images.resize_image(0, image, width, height, upscaler_name=upscaler)


def note_hires(p: Any, said: dict[str, Any], note: str | None) -> None:
    """What the WebUI records of a Hires. fix: its keys in ``extra_generation_params``
    (the API's ``info``), and a note under the images (``p.comment``, A1111 ≥1.6)."""
    extra = getattr(p, "extra_generation_params", None)
    if isinstance(extra, dict):
        extra.update(said)
    comment = getattr(p, "comment", None)
    if note and callable(comment):
        comment(note)


def preview(image: Any) -> None:
    assign = getattr(state(), "assign_current_image", None)
    if callable(assign):
        assign(image)


def processed(p: Any, images: list, seeds: list[int], prompts_: list[str],
              negatives: list[str], infotexts: list[str]) -> Any:
    """The host's ``Processed``; positional core arguments and only the keywords that
    A1111 1.6–1.10 and Forge all take (Forge adds ``extra_images_list``)."""
    from modules import processing
    seed = seeds[0] if seeds else -1
    return processing.Processed(
        p, images, seed, infotexts[0] if infotexts else "",
        all_prompts=prompts_ or None, all_negative_prompts=negatives or None,
        all_seeds=seeds or None, infotexts=infotexts)
