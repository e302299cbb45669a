"""AUTOMATIC1111's API under ``/sdapi/v1``, for Open WebUI, SillyTavern, webuiapi & co.

* ``txt2img`` / ``img2img`` — ``batch_size`` images per engine job, one job per
  ``n_iter``; seeds ``seed, seed+1, …`` across all images; answered with raw base64
  PNGs (carrying A1111's ``parameters`` text), the request echoed with its defaults as
  ``parameters``, and ``info`` as a JSON string.
* ``options`` — every option A1111 has, with its defaults (``a1111_options.json``); the
  whole dict round-trips; ``sd_model_checkpoint`` switches the model
  A1111 requests use by default (this daemon's A1111 state, not its settings) and
  ``CLIP_stop_at_last_layers`` their clip skip. A user key's options are its own, over
  the defaults the admin key (or local mode) sets.
* ``progress`` / ``interrupt`` / ``skip`` — the request A1111 would be running for the
  caller (``a1111_state.current``), read from the job engine (ETA from recent job
  durations).
* ``extra-single-image`` / ``extra-batch-images``, and txt2img's ``enable_hr`` — upscaling
  with Arting's image-enhance (``sdapi_upscale``).
* the listings clients read at start-up (models, samplers, schedulers, LoRAs, upscalers …).

Errors come in A1111's shapes (``sdapi_errors``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

from aiohttp import web

from .. import __version__, catalog as builtin
from ..auth import generates, principal, public
from ..engine.jobs import Job, JobState
from ..engine.runner import Runner
from ..errors import InvalidRequest, ModelNotFound
from ..generation import (Catalog, Generation, build_generation, new_seed, prompt_loras,
                          resolve_sampler)
from ..imaging import png_with_text
from ..openapi import Doc, operation
from ..state import A1111, CATALOG, ENGINE, PROVIDER, RULES, SETTINGS, STORE
from ..upscaling import Upscale
from . import callers, sdapi_scripts, sdapi_upscale
from .a1111_state import Batch, current
from .http import (CACHE_ANSWER, CACHE_REQUEST, StoredB64, base_url, cache_headers, may_reuse,
                   read_json, reply, reply_with_images, status_text)
from .intake import require_img2img, stored_source, take_init_image
from .sdapi_models import (Embeddings, Empty, Extension, ExtrasBatchAnswer,
                           ExtrasBatchImagesRequest, ExtrasSingleAnswer,
                           ExtrasSingleImageRequest, FaceRestorer, Hypernetwork, ImagesAnswer,
                           Img2ImgRequest, LoraEntry, NameOnly, Progress, ProgressQuery,
                           ProgressState, PromptStyle, RealesrganModel, Sampler, Scheduler,
                           ScriptInfo, Scripts, SDModel, Txt2ImgRequest, Upscaler, Vae)

log = logging.getLogger(__name__)

#: Every option A1111 v1.10.1 defines (its built-in extensions' too) with A1111's default:
#: what ``GET /sdapi/v1/options`` of a fresh A1111 answers, kept in a file beside this
#: one. Clients read any of them (A1111's own tests read ``send_seed``).
A1111_DEFAULTS: dict[str, Any] = json.loads(
    (Path(__file__).with_name("a1111_options.json")).read_text(encoding="utf-8"))
#: The options this daemon acts on, with what it does: its clip skip, PNGs with their
#: infotext, no grid, no live previews, nothing saved on its disk.
DAEMON_OPTIONS: dict[str, Any] = {
    "sd_vae": "Automatic", "CLIP_stop_at_last_layers": 2, "samples_format": "png",
    "enable_pnginfo": True, "return_grid": False, "eta_noise_seed_delta": 0,
    "sd_checkpoints_limit": 1, "live_previews_enable": False, "samples_save": False,
}
#: POSTed keys are kept beside these and returned as given.
DEFAULT_OPTIONS: dict[str, Any] = {**A1111_DEFAULTS, **DAEMON_OPTIONS}
#: Keys never stored: derived from the model, or (``forge_preset``) making SillyTavern
#: take this daemon for Forge.
UNSTORED = ("sd_model_checkpoint", "sd_checkpoint_hash", "forge_preset")
#: Bytes (as JSON) the options one key (or the defaults) may hold beyond those below
#: them: any name is kept and returned, so what is kept is bounded.
MAX_KEPT_OPTIONS = 64 * 1024


def _upscales(request: web.Request, batch: Batch) -> sdapi_upscale.RunJobs:
    """Runs upscale jobs as part of an A1111 request, to their end."""
    engine, state = request.config_dict[ENGINE], request.config_dict[A1111]

    async def run(requests: list[Upscale]) -> list[Job]:
        started = []
        for upscale in requests:
            started.append(await engine.submit(upscale, source="a1111", owner=batch.owner))
            batch.upscales.append(started[-1])
            await state.update(batch)
        await _wait_all(engine, started)
        return started
    return run




# --- model names ------------------------------------------------------------------------

def sha256_of(model_id: str) -> str:
    """A stable stand-in for the checkpoint's file hash (Arting publishes none)."""
    return hashlib.sha256(model_id.encode()).hexdigest()


def title(model_id: str) -> str:
    return f"{model_id}.safetensors [{sha256_of(model_id)[:10]}]"


def find_model(models: Catalog, name: Any) -> str:
    """A checkpoint named as A1111 accepts it: title, name, short hash or sha256."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequest("sd_model_checkpoint must be a model title from "
                             "/sdapi/v1/sd-models.", param="sd_model_checkpoint")
    if models.has_model(name):
        return models.resolve_model(name)
    key = name.strip().lower()
    for model_id in models.models:
        digest = sha256_of(model_id)
        if key in (digest, digest[:10]):
            return model_id
    raise ModelNotFound(f"No checkpoint {name!r} here; GET /sdapi/v1/sd-models lists the "
                        "models this daemon offers.", param="sd_model_checkpoint")


# --- options ----------------------------------------------------------------------------

def options_view(chosen: str | None, options: dict[str, Any], models: Catalog) -> dict[str, Any]:
    model = chosen or models.default_model
    return {**DEFAULT_OPTIONS, **options, "sd_model_checkpoint": title(model),
            "sd_checkpoint_hash": sha256_of(model)}


def clip_skip_option(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 12:
        raise InvalidRequest("CLIP_stop_at_last_layers must be an integer from 1 to 12.",
                             param="CLIP_stop_at_last_layers")
    return value


#: Bounds on the options a client sets: a name's length, one value's size as JSON, and
#: how many names A1111 does not have may be kept (what is set is stored, and every
#: ``GET /options`` answers it).
MAX_OPTION_NAME, MAX_OPTION_BYTES, MAX_UNKNOWN_OPTIONS = 128, 64 * 1024, 64


def check_options(data: dict[str, Any], kept: dict[str, Any]) -> None:
    """Refuse options past the bounds, naming the first."""
    for name, value in data.items():
        if len(name) > MAX_OPTION_NAME:
            raise InvalidRequest(f"Option names may be at most {MAX_OPTION_NAME} characters "
                                 f"long; {name[:40]!r}… is longer.", param=name[:40])
        if len(json.dumps(value)) > MAX_OPTION_BYTES:
            raise InvalidRequest(f"The option {name} is larger than {MAX_OPTION_BYTES} bytes "
                                 "as JSON.", param=name)
    unknown = {name for name in (*kept, *data)
               if name not in DEFAULT_OPTIONS and name not in UNSTORED}
    if len(unknown) > MAX_UNKNOWN_OPTIONS:
        raise InvalidRequest(f"At most {MAX_UNKNOWN_OPTIONS} options A1111 does not have may "
                             f"be set; this would make {len(unknown)}.")


#: A1111's options: every name → its value (``sd_model_checkpoint`` among them).
Options = dict[str, Any]


def options_layer(request: web.Request) -> str | None:
    """Whose options the caller sets: a user key its own; the admin key (or the local
    user) the defaults everyone starts from (None)."""
    caller = principal(request)
    return None if caller.admin else caller.id


async def callers_options(request: web.Request) -> tuple[str | None, dict[str, Any]]:
    """The checkpoint (None: the catalog's default) and options the caller sees and
    uses: the defaults, and a user key's own over them."""
    state, layer = request.config_dict[A1111], options_layer(request)
    model, options = await state.read()
    if layer is not None:
        own_model, own = await state.read(layer)
        model, options = own_model or model, {**options, **own}
    return model, options


@operation("The options", "Every option, `sd_model_checkpoint` (the model A1111 requests "
           "use when they name none) among them: the defaults, and what the caller's user "
           "key has set over them.", answers={200: Options})
async def get_options(request: web.Request) -> web.Response:
    chosen, options = await callers_options(request)
    return reply(options_view(chosen, options, request.config_dict[CATALOG]), as_type=Options)


@operation("Set options", "Any of them (Open WebUI posts back the whole dict); nothing "
           "changes unless every value is acceptable. A user key sets its own (no other key "
           "sees them); the admin key sets the defaults every key starts from. Kept across "
           "restarts; what one key keeps beyond the defaults is bounded (64 KiB as JSON).",
           body=Options, answers={200: None}, errors=(404,))
async def set_options(request: web.Request) -> web.Response:
    """Take the whole dict (Open WebUI posts back everything it read); nothing changes
    unless every value is acceptable. Only what differs from the layer below is kept, so
    a dict posted back as read keeps nothing new, and a key follows later defaults in
    every option it has not changed."""
    data = await read_json(request)
    if not isinstance(data, dict):
        raise InvalidRequest("Send the options as a JSON object of names and values.")
    state, models = request.config_dict[A1111], request.config_dict[CATALOG]
    layer = options_layer(request)
    base_model, base = await state.read() if layer is not None else (None, {})
    chosen, options = await state.read(layer)
    check_options(data, options)
    model = find_model(models, data["sd_model_checkpoint"]) \
        if "sd_model_checkpoint" in data else chosen
    if layer is not None and model == (base_model or models.default_model):
        model = None                               # the default's: follow it
    if "CLIP_stop_at_last_layers" in data:
        clip_skip_option(data["CLIP_stop_at_last_layers"])
    below = {**DEFAULT_OPTIONS, **base}
    options.update({k: v for k, v in data.items() if k not in UNSTORED})
    options = {k: v for k, v in options.items() if k not in below or below[k] != v}
    size = len(json.dumps(options))
    if size > MAX_KEPT_OPTIONS:
        raise InvalidRequest(
            f"These options would keep {size} bytes beyond the defaults; at most "
            f"{MAX_KEPT_OPTIONS} are kept for one key. Send only options A1111 has, or fewer "
            "made-up ones.")
    if model != chosen:
        log.info("A1111 model switched to %s%s", model or "the default",
                 "" if layer is None else f" for key {layer}")
    await state.write(layer, model, options)
    return reply(None, as_type=None)


# --- txt2img / img2img -----------------------------------------------------------------

@operation("Text to image", "A1111's txt2img: `batch_size` images per Arting job, "
           "`n_iter` jobs; `<lora:id:weight>` in the prompt; `enable_hr` upscales with "
           "Arting.", body=Txt2ImgRequest, headers=CACHE_REQUEST,
           answers={200: Doc(ImagesAnswer, "The images.", headers=CACHE_ANSWER)})
@generates
async def txt2img(request: web.Request) -> web.Response:
    body = Txt2ImgRequest.model_validate(await read_json(request))
    return await _generate(request, body, "txt2img")


@operation("Image to image", "txt2img's fields plus `init_images` (the first is used), "
           "`denoising_strength` and `mask` (white = repaint). Needs `img2img = true`.",
           body=Img2ImgRequest, headers=CACHE_REQUEST,
           answers={200: Doc(ImagesAnswer, "The images.", headers=CACHE_ANSWER)})
@generates
async def img2img(request: web.Request) -> web.Response:
    body = Img2ImgRequest.model_validate(await read_json(request))
    require_img2img(request)
    if not body.init_images:
        raise InvalidRequest("init_images is required: a list with the picture to start "
                             "from, as base64 or a data URL.", param="init_images")
    # Arting takes one init image: the first one given is used. A1111's mask: white =
    # repaint, blurred and inverted as the request says.
    blur = body.mask_blur if body.mask_blur is not None else max(body.mask_blur_x,
                                                                body.mask_blur_y)
    init = await take_init_image(request, body.init_images[0], "init_images",
                                 mask=body.mask or None, blur=blur,
                                 invert=bool(body.inpainting_mask_invert))
    upscaling = sdapi_scripts.sd_upscale(body, request.config_dict[SETTINGS], init.width,
                                         init.height)
    size = {"width": init.width, "height": init.height} if upscaling else {}
    return await _generate(request, body, "img2img", upscaling, init_image=init.hash,
                           mask=init.mask, strength=body.denoising_strength, **size)


@operation("Upscale a picture (Extras)", "Upscalers `None`, `Lanczos`, `Nearest`, and "
           "`Arting` (image-enhance 2× or 4×, then resized to the exact size).",
           body=ExtrasSingleImageRequest, answers={200: ExtrasSingleAnswer})
@generates
async def extra_single_image(request: web.Request) -> web.Response:
    body = ExtrasSingleImageRequest.model_validate(await read_json(request))
    hashes, info = await _extras(request, body, [body.image])
    return await reply_with_images(request, ExtrasSingleAnswer(html_info=info,
                                                               image=StoredB64(hashes[0])))


@operation("Upscale pictures (Extras, batch)", body=ExtrasBatchImagesRequest,
           answers={200: ExtrasBatchAnswer})
@generates
async def extra_batch_images(request: web.Request) -> web.Response:
    body = ExtrasBatchImagesRequest.model_validate(await read_json(request))
    hashes, info = await _extras(request, body, [image.data for image in body.imageList])
    return await reply_with_images(request, ExtrasBatchAnswer(
        html_info=info, images=[StoredB64(h) for h in hashes]))


async def _extras(request: web.Request, body: Any, images: list[str]) -> tuple[list[str], str]:
    async with _in_flight(request, "extras") as batch:
        return await sdapi_upscale.extras(request, body, images,
                                          _upscales(request, batch))


def _check_request(body: Txt2ImgRequest, kind: str, max_images: int) -> None:
    sdapi_scripts.check(body, kind)
    if body.batch_size < 1 or body.n_iter < 1:
        raise InvalidRequest("batch_size and n_iter must be at least 1.",
                             param="batch_size" if body.batch_size < 1 else "n_iter")
    if body.images > max_images:
        raise InvalidRequest(f"batch_size × n_iter asks for {body.images} images; this daemon "
                             f"makes at most {max_images} per request (max_images).",
                             param="batch_size")


async def _generate(request: web.Request, body: Txt2ImgRequest, kind: str,
                    upscaling: sdapi_scripts.Upscaling | None = None,
                    **image: Any) -> web.Response:
    """Generate as the request says (``image``: the init image, its mask, strength, and
    the size when the script decides it); then, for Hires. fix or SD upscale, upscale."""
    rules, models = request.config_dict[RULES], request.config_dict[CATALOG]
    engine, state = request.config_dict[ENGINE], request.config_dict[A1111]
    _check_request(body, kind, rules.max_images)
    hires = kind == "txt2img" and body.enable_hr
    if hires or (upscaling and upscaling.upscaler == sdapi_upscale.ARTING):
        request.config_dict[PROVIDER].require("upscale")  # now, before images are paid for
    overrides = body.override_settings or {}
    chosen, kept = await callers_options(request)
    options = {**DEFAULT_OPTIONS, **kept, **overrides}
    model = chosen or models.default_model
    if "sd_model_checkpoint" in overrides:
        try:
            model = find_model(models, overrides["sd_model_checkpoint"])
        except ModelNotFound:  # per request, unknown names follow `unknown_models`
            model = models.resolve_model(overrides["sd_model_checkpoint"])
    prompt, loras, missing = prompt_loras(body.prompt, models.loras)
    if missing:
        log.info("A1111 request: LoRAs not found and left out: %s", ", ".join(missing))
    seed = body.seed if body.seed >= 0 else new_seed()
    size = {"width": body.width, "height": body.height, **image}
    gens = [build_generation(
        rules, models, prompt=prompt, negative_prompt=body.negative_prompt, model=model,
        n=body.batch_size, seed=seed + i * body.batch_size, steps=body.steps,
        guidance=body.cfg_scale, sampler=resolve_sampler(body.sampler, body.scheduler),
        clip_skip=clip_skip_option(options["CLIP_stop_at_last_layers"]), loras=loras, **size)
        for i in range(body.n_iter)]

    if hires:
        upscaling = sdapi_scripts.Upscaling(
            sdapi_upscale.ARTING, sdapi_upscale.hires_target(body, gens[0].width,
                                                             gens[0].height),
            hires_params(body, f"{sdapi_upscale.ARTING} (image-enhance "
                               f"{request.config_dict[SETTINGS].upscale_version})"))
    if upscaling is not None:       # refused now, before images are paid for
        upscaling.target.within(request.config_dict[SETTINGS].max_upscale_pixels,
                                gens[0].width, gens[0].height)
    reuse = may_reuse(request, body.seed)
    async with _in_flight(request, kind) as batch:
        for gen in gens:
            batch.jobs.append(await engine.submit(gen, source="a1111", owner=batch.owner,
                                                  reuse=reuse, origin=base_url(request)))
            await state.update(batch)
        await _wait_all(engine, batch.jobs)
        await state.refresh(batch)
        made = [img for job in batch.jobs for img in job.images]
        hashes = [img.hash for img in made]
        if upscaling is not None and not batch.interrupted:
            store = request.config_dict[STORE]
            hashes = await sdapi_upscale.upscale(
                request, [await stored_source(store, i.hash, i.seed) for i in made],
                upscaling.upscaler, upscaling.target,
                _upscales(request, batch))
            await state.refresh(batch)

    info = build_info(body, gens, batch, upscaling.said if upscaling else {})
    images: list[StoredB64] = []
    if body.send_images:
        pnginfo = bool(options.get("enable_pnginfo", True))
        images = [StoredB64(digest, edit=partial(png_with_text, key="parameters", text=text)
                            if pnginfo else None)
                  for digest, text in zip(hashes, info["infotexts"])]
    return await reply_with_images(request, ImagesAnswer(
        images=images, parameters=body.parameters(), info=json.dumps(info)),
        headers=cache_headers(*batch.every))


@contextlib.asynccontextmanager
async def _in_flight(request: web.Request, kind: str) -> AsyncIterator[Batch]:
    """An A1111 request's jobs, seen by progress and interrupt while it runs; if it
    fails or its client goes away, its jobs are abandoned (cancelled unless someone
    follows them), and a request whose client went away is marked ``gone``."""
    state = request.config_dict[A1111]
    batch = Batch(kind, principal(request).id, hung_up=partial(callers.gone, request))
    await state.add(batch)
    try:
        yield batch
    except BaseException:
        if not batch.gone and callers.gone(request):
            await state.mark(batch, gone=True)
        for job in batch.every:
            callers.abandon(request, job)
        raise
    finally:
        await state.remove(batch)


async def _wait_all(engine: Runner, jobs: list[Job]) -> None:
    """Until every job has ended; a failed one raises at once (its error). Jobs ended by
    interrupt or skip are not an error: the answer holds the images that were made."""
    pending = {asyncio.ensure_future(engine.wait(job)) for job in jobs}
    try:
        while pending:
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            failed = next((j for j in jobs if j.state is JobState.FAILED and j.error), None)
            if failed is not None:
                raise failed.error  # type: ignore[misc]
    finally:
        for waiter in pending:
            waiter.cancel()


# --- what the answer says ----------------------------------------------------------------

def reported_sampler(gen: Generation) -> tuple[str, str]:
    """(sampler, schedule type) as A1111 v1.10 reports them: "DPM++ 2M", "Karras"."""
    if gen.sampler.endswith(" Karras"):
        return gen.sampler.removesuffix(" Karras"), "Karras"
    return gen.sampler, "Automatic"


def hires_params(body: Txt2ImgRequest, upscaler: str) -> dict[str, Any]:
    """What A1111's infotext says of a Hires. fix: by how much, and with what (here
    always Arting's image-enhance, after the generation)."""
    by = ({"Hires upscale": f"{body.hr_scale:g}"} if body.hr_resize_x <= 0 and
          body.hr_resize_y <= 0 else {"Hires resize": f"{body.hr_resize_x}x{body.hr_resize_y}"})
    return {**by, "Hires upscaler": upscaler}


def infotext(body: Txt2ImgRequest, gen: Generation, seed: int,
             extra: dict[str, Any] | None = None) -> str:
    """A1111's infotext: prompt, negative prompt, then ``key: value`` pairs."""
    sampler, schedule = reported_sampler(gen)
    pairs = {"Steps": gen.steps, "Sampler": sampler, "Schedule type": schedule,
             "CFG scale": gen.guidance, "Seed": seed, "Size": f"{gen.width}x{gen.height}",
             "Model hash": sha256_of(gen.model)[:10], "Model": gen.model}
    if gen.is_img2img:
        pairs["Denoising strength"] = gen.strength
    if gen.clip_skip > 1:
        pairs["Clip skip"] = gen.clip_skip
    pairs.update(extra or {})
    pairs["Version"] = f"arting-2api-{__version__}"
    lines = [body.prompt]
    if body.negative_prompt:
        lines.append(f"Negative prompt: {body.negative_prompt}")
    lines.append(", ".join(f"{k}: {v}" for k, v in pairs.items()))
    return "\n".join(lines)


def build_info(body: Txt2ImgRequest, gens: list[Generation], batch: Batch,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """``info`` (sent as a JSON string): what A1111's ``Processed.js()`` holds."""
    first = gens[0]
    made = [img.seed for job in batch.jobs for img in job.images]
    asked = [s for gen in gens for s in gen.seeds()]
    # the seeds the images came with (Midjourney's four share one), where all were made
    all_seeds = made if len(made) == len(asked) else asked
    sampler, schedule = reported_sampler(first)
    count = len(all_seeds)
    return {
        "prompt": body.prompt, "all_prompts": [body.prompt] * count,
        "negative_prompt": body.negative_prompt,
        "all_negative_prompts": [body.negative_prompt] * count,
        "seed": first.seed, "all_seeds": all_seeds,
        "subseed": body.subseed if body.subseed >= 0 else first.seed,
        "all_subseeds": [body.subseed if body.subseed >= 0 else s for s in all_seeds],
        "subseed_strength": body.subseed_strength,
        "width": first.width, "height": first.height, "sampler_name": sampler,
        "cfg_scale": first.guidance, "steps": first.steps, "batch_size": body.batch_size,
        "restore_faces": bool(body.restore_faces), "face_restoration_model": None,
        "sd_model_name": first.model, "sd_model_hash": sha256_of(first.model)[:10],
        "sd_vae_name": None, "sd_vae_hash": None,
        "seed_resize_from_w": body.seed_resize_from_w,
        "seed_resize_from_h": body.seed_resize_from_h,
        "denoising_strength": first.strength if first.is_img2img else None,
        "extra_generation_params": {"Schedule type": schedule, **(extra or {})},
        "index_of_first_image": 0,
        "infotexts": [infotext(body, first, s, extra) for s in made],
        "styles": body.styles or [],
        "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(batch.started)),
        "clip_skip": first.clip_skip, "is_using_inpainting_conditioning": False,
        "version": f"arting-2api-{__version__}",
        "interrupted": batch.interrupted,
    }


# --- progress, interrupt, skip ----------------------------------------------------------

IDLE_STATE = ProgressState(skipped=False, interrupted=False, stopping_generation=False,
                           job="", job_count=0, job_timestamp="0", job_no=0, sampling_step=0,
                           sampling_steps=0)


@operation("Progress", "The caller's A1111 request that A1111 would be running (the one "
           "`interrupt` stops): its jobs as one progress bar.",
           query=ProgressQuery, answers={200: Progress})
async def progress(request: web.Request) -> web.Response:
    """The request ``interrupt`` would stop, as one progress bar. Idle is exactly
    ``progress 0`` with ``job_count 0``, which clients wait for after switching models."""
    engine = request.config_dict[ENGINE]
    batch = current(await _callers_requests(request), running=True)
    jobs = batch.every if batch is not None else []
    if batch is None or not jobs:
        return reply(Progress(progress=0.0, eta_relative=0.0, state=IDLE_STATE,
                              current_image=None, textinfo=None))
    estimates = [engine.progress(job) for job in jobs]
    done = sum(job.state.terminal for job in jobs)
    now = next((j for j in jobs if not j.state.terminal), jobs[-1])
    fraction = sum(f for f, _ in estimates) / len(jobs)
    eta = max((e for (_, e), j in zip(estimates, jobs) if not j.state.terminal and e),
              default=0.0)
    steps = now.generation.steps if isinstance(now.generation, Generation) else 1
    return reply(Progress(
        progress=round(min(max(fraction, 0.01), 0.99), 4),
        eta_relative=round(eta, 2),
        state=ProgressState(
            skipped=batch.skipped, interrupted=batch.interrupted, stopping_generation=False,
            job=f"Batch {min(done + 1, len(jobs))} out of {len(jobs)}",
            job_count=len(jobs), job_no=done,
            job_timestamp=time.strftime("%Y%m%d%H%M%S", time.localtime(batch.started)),
            sampling_step=int(engine.progress(now)[0] * steps),
            sampling_steps=steps),
        current_image=None,
        textinfo=_textinfo(engine, now)))


def _textinfo(engine: Runner, job: Job) -> str:
    said = status_text(engine, job)
    label = engine.provider.for_job(job).label
    if said == "generating" and isinstance(job.generation, Upscale):
        return f"Upscaling {job.generation.scale}× on {label}"
    where = f" on {label} ({job.generation.model})" if said == "generating" else ""
    return said.capitalize() + where


async def _callers_requests(request: web.Request) -> list[Batch]:
    """The caller's A1111 requests; one whose client hung up a moment ago is ``gone`` now,
    even if its handler has not heard of it yet (SillyTavern's interrupt follows its
    hang-up by a millisecond)."""
    state = request.config_dict[A1111]
    batches = await state.of(principal(request).id)
    for batch in batches:
        if not batch.gone and batch.hung_up():
            await state.mark(batch, gone=True)
    return batches


STOPS_WHICH = ("A1111 runs one request at a time; here it is the caller's request whose "
               "client has just gone away, if there is one, else the caller's oldest A1111 "
               "request in flight. Never another caller's, nor a job of another API.")


@operation("Interrupt", "Stop the request A1111 would be running; it answers with the "
           "images already made. " + STOPS_WHICH, answers={200: Empty})
async def interrupt(request: web.Request) -> web.Response:
    """Stop the request A1111 would be running (``current``); it answers with the images
    already made."""
    engine, state = request.config_dict[ENGINE], request.config_dict[A1111]
    batch = current(await _callers_requests(request))
    if batch is not None:
        await state.mark(batch, interrupted=True)
        for job in batch.every:
            engine.cancel(job)
    return reply(Empty())


@operation("Skip", "Drop the job the request A1111 would be running is on; its other "
           "iterations go on. " + STOPS_WHICH, answers={200: None})
async def skip(request: web.Request) -> web.Response:
    """Drop the job the request A1111 would be running (``current``) is on; its other
    iterations go on."""
    engine, state = request.config_dict[ENGINE], request.config_dict[A1111]
    batch = current(await _callers_requests(request))
    if batch is not None:
        await state.mark(batch, skipped=True)
        job = next((j for j in batch.every if not j.state.terminal), None)
        if job is not None:
            engine.cancel(job)
    return reply(None, as_type=None)


# --- listings ---------------------------------------------------------------------------

@operation("Checkpoints", "Every provider's models as A1111 checkpoints (`title`: "
           "`id.safetensors [hash]`).", answers={200: list[SDModel]})
async def sd_models(request: web.Request) -> web.Response:
    """Every provider's models, as checkpoints (``provider`` says whose; clients ignore it)."""
    models = request.config_dict[CATALOG]
    return reply([SDModel(title=title(m), model_name=m, hash=sha256_of(m)[:10],
                          sha256=sha256_of(m), filename=f"{m}.safetensors", config=None,
                          provider=models.owners[m])
                  for m in models.models], as_type=list[SDModel])


@operation("LoRAs", "Use them as in A1111: `<lora:add_detail:0.6>` in the prompt.",
           answers={200: list[LoraEntry]})
async def loras(request: web.Request) -> web.Response:
    """Use them as in A1111, ``<lora:add_detail:0.6>`` in the prompt."""
    return reply([LoraEntry(name=lora, alias=lora, path=f"{lora}.safetensors",
                            metadata={"ss_output_name": name})
                  for lora, name in request.config_dict[CATALOG].loras.items()],
                 as_type=list[LoraEntry])


def _samplers() -> list[Sampler]:
    """Arting's samplers as A1111 v1.10 lists them: Karras variants are a scheduler."""
    names = dict.fromkeys(s.removesuffix(" Karras") for s in builtin.SAMPLERS)
    return [Sampler(name=n, aliases=[], options={}) for n in names]


#: Arting honours these two; others are accepted and mean "automatic".
SCHEDULERS = [
    Scheduler(name="automatic", label="Automatic", aliases=None, default_rho=-1,
              need_inner_model=False),
    Scheduler(name="karras", label="Karras", aliases=None, default_rho=7.0,
              need_inner_model=False),
]

#: Answers that never change: what A1111 clients list, and what this daemon has none of
#: (path → the answer, its type, what it is).
FIXED_GETS: dict[str, tuple[Any, Any, str]] = {
    "/samplers": (_samplers(), list[Sampler], "Samplers (Karras variants are a scheduler)"),
    "/schedulers": (SCHEDULERS, list[Scheduler], "Schedulers: `automatic` and `karras`"),
    "/scripts": (sdapi_scripts.SCRIPTS, Scripts, "Scripts: `sd upscale` (img2img)"),
    "/latent-upscale-modes": ([], list[NameOnly], "Latent upscale modes (none)"),
    "/sd-vae": ([], list[Vae], "VAEs (none)"),
    "/hypernetworks": ([], list[Hypernetwork], "Hypernetworks (none)"),
    "/face-restorers": ([], list[FaceRestorer], "Face restorers (none)"),
    "/realesrgan-models": ([], list[RealesrganModel], "RealESRGAN models (none)"),
    "/prompt-styles": ([], list[PromptStyle], "Prompt styles (none)"),
    "/embeddings": ({"loaded": {}, "skipped": {}}, Embeddings, "Embeddings (none)"),
    "/extensions": ([], list[Extension], "Extensions (none)"),
    "/cmd-flags": ({"api": True, "nowebui": True}, dict[str, Any], "Command-line flags"),
}
#: POSTs that do nothing here, answered as A1111 answers them.
FIXED_POSTS: dict[str, tuple[Any, Any, str]] = {
    "/refresh-checkpoints": (None, None, "Refresh checkpoints (nothing to do)"),
    "/refresh-vae": (None, None, "Refresh VAEs (nothing to do)"),
    "/refresh-embeddings": (None, None, "Refresh embeddings (nothing to do)"),
    "/refresh-loras": (None, None, "Refresh LoRAs (nothing to do)"),
    "/unload-checkpoint": ({}, Empty, "Unload the checkpoint (nothing to do)"),
    "/reload-checkpoint": ({}, Empty, "Reload the checkpoint (nothing to do)"),
}


def _fixed(value: Any, kind: Any, summary: str):
    @operation(summary, answers={200: kind})
    async def handler(request: web.Request) -> web.Response:
        return reply(value, as_type=kind)
    return handler


@operation("Scripts' arguments", "SD upscale's (img2img), as A1111 describes them.",
           answers={200: list[ScriptInfo]})
async def script_info(request: web.Request) -> web.Response:
    return reply(sdapi_scripts.script_info(request.config_dict[SETTINGS]),
                 as_type=list[ScriptInfo])


@operation("Upscalers", "`None`, `Lanczos`, `Nearest`, and `Arting` when `upscale` is on.",
           answers={200: list[Upscaler]})
async def upscalers(request: web.Request) -> web.Response:
    return reply(sdapi_upscale.upscalers(request.config_dict[SETTINGS]), as_type=list[Upscaler])


@operation("A1111's liveness check", answers={200: Empty}, tag="AUTOMATIC1111")
@public
async def ping(request: web.Request) -> web.Response:
    """``GET /internal/ping`` (root app): A1111's liveness check."""
    return reply(Empty())


def add_routes(app: web.Application) -> None:
    app.router.add_post("/txt2img", txt2img)
    app.router.add_post("/img2img", img2img)
    app.router.add_post("/extra-single-image", extra_single_image)
    app.router.add_post("/extra-batch-images", extra_batch_images)
    app.router.add_get("/upscalers", upscalers)
    app.router.add_get("/script-info", script_info)
    app.router.add_get("/options", get_options)
    app.router.add_post("/options", set_options)
    app.router.add_get("/sd-models", sd_models)
    app.router.add_get("/loras", loras)
    app.router.add_get("/progress", progress)
    app.router.add_post("/interrupt", interrupt)
    app.router.add_post("/skip", skip)
    for path, fixed in FIXED_GETS.items():
        app.router.add_get(path, _fixed(*fixed))
    for path, fixed in FIXED_POSTS.items():
        app.router.add_post(path, _fixed(*fixed))
