"""What "Arting (remote)" does when it runs: SD-WebUI's request → daemon jobs →
the host's ``Processed``, with ``shared.state`` moving as it would for a local run.

Batch count × batch size becomes one daemon job per batch (split further where a
batch is larger than the daemon's ``max_images`` or mixes prompts); image ``i`` gets
seed ``seed + i`` as in the host. With the upscale option each job's images go through
one more job, Arting's 2× or 4× upscale, before they reach the gallery; a Hires. fix of
the tab is honoured instead (``upscale.py``). Interrupt
cancels the daemon job and stops; Skip cancels it and goes on with the next batch;
"Stop generating" (newer hosts) lets the running batch finish.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Sequence
from typing import Any

from . import encode, glue, infotext, settings, upscale
from .choices import (DAEMON_DEFAULT, DEFAULT_LORA_WEIGHT, LORA_SLOTS, NO_LORA, sampler_name,
                      upscale_factor)
from .daemon_client import DaemonClient, JobCancelled, status_line

POLL_INTERVAL = 0.5
CLIENT_NAME = "sd-webui"
SEED_SPACE = 2**32
#: Longest wait for one HTTP answer from the daemon (the whole job has its own timeout).
REQUEST_TIMEOUT = 30.0


@dataclass(frozen=True)
class Controls:
    """The values of the script's own controls, in ``ui()``'s order."""

    model: str | None = None
    nsfw: bool = False
    loras: tuple[tuple[str, float], ...] = ()
    upscale: int | None = None

    @classmethod
    def from_args(cls, args: Sequence[Any]) -> Controls:
        """The controls from ``script_args``; the upscale choice, added later, may be
        left out (API callers that send the first eight)."""
        args = list(args) + [None] * (3 + 2 * LORA_SLOTS - len(args))
        model = str(args[0] or "").strip()
        loras = []
        for slot in range(LORA_SLOTS):
            lora_id = str(args[2 + 2 * slot] or "").strip()
            weight = args[3 + 2 * slot]
            if lora_id and lora_id != NO_LORA:
                loras.append((lora_id, DEFAULT_LORA_WEIGHT if weight is None else float(weight)))
        return cls(model=None if model in ("", DAEMON_DEFAULT) else model,
                   nsfw=bool(args[1]), loras=tuple(loras),
                   upscale=upscale_factor(args[2 + 2 * LORA_SLOTS]))


@dataclass(frozen=True)
class Chunk:
    """One daemon job: ``count`` images from index ``start`` of the whole run."""

    start: int
    count: int


def plan(n_iter: int, batch_size: int, prompts: list[str], negatives: list[str],
         max_images: int) -> list[list[Chunk]]:
    """The daemon jobs of each batch: runs of equal prompts, at most ``max_images`` long."""
    batches = []
    for n in range(n_iter):
        chunks: list[Chunk] = []
        for i in range(n * batch_size, (n + 1) * batch_size):
            last = chunks[-1] if chunks else None
            same = last is not None and (prompts[i], negatives[i]) == (
                prompts[last.start], negatives[last.start])
            if same and last.count < max_images:
                chunks[-1] = Chunk(last.start, last.count + 1)
            else:
                chunks.append(Chunk(i, 1))
        batches.append(chunks)
    return batches


def base_request(p: Any, controls: Controls) -> dict[str, Any]:
    """The fields every job of this run shares."""
    request: dict[str, Any] = {
        "width": int(p.width), "height": int(p.height), "steps": int(p.steps),
        "guidance": float(p.cfg_scale),
        "sampler": sampler_name(getattr(p, "sampler_name", None), getattr(p, "scheduler", None)),
        "loras": [{"id": i, "weight": w} for i, w in controls.loras],
        "nsfw": controls.nsfw,
    }
    if controls.model:
        request["model"] = controls.model
    init_images = getattr(p, "init_images", None)
    if init_images:
        background = glue.opt("img2img_background_color", "#ffffff")
        request["init_image"] = encode.png_b64(encode.flatten(init_images[0], background))
        request["strength"] = float(p.denoising_strength)
        mask = encode.inpaint_mask(p)
        if mask is not None:
            request["mask"] = encode.png_b64(mask)
    return request


class Progress:
    """``shared.state`` as the host's own loop moves it: job counters per batch,
    sampling steps from the daemon's progress, one line of status text."""

    def __init__(self, state: Any, steps: int, n_iter: int) -> None:
        self.state, self.steps, self.n_iter = state, max(1, int(steps or 1)), n_iter

    def start(self) -> None:
        self.state.job_count = self.n_iter
        self.state.sampling_steps = self.steps
        self.state.sampling_step = 0

    def batch(self, n: int) -> None:
        self.state.skipped = False
        if self.n_iter > 1:
            self.state.job = f"Batch {n + 1} out of {self.n_iter}"

    def update(self, job: dict) -> None:
        done = job.get("progress") or 0.0
        self.state.sampling_step = min(self.steps, int(done * self.steps))
        self.state.textinfo = f"Arting: {status_line(job)}"

    def cancel_requested(self) -> bool:
        return bool(self.state.interrupted or self.state.skipped)

    def stop_requested(self) -> bool:
        return bool(self.state.interrupted or getattr(self.state, "stopping_generation", False))

    def next_batch(self) -> None:
        nextjob = getattr(self.state, "nextjob", None)
        if callable(nextjob):
            nextjob()
        else:
            self.state.job_no += 1
            self.state.sampling_step = 0

    def finish(self) -> None:
        """Leave nothing of ours behind, however the run ended."""
        self.state.textinfo = None
        self.state.sampling_step = 0


def run(p: Any, args: Sequence[Any]) -> Any:
    config = settings.daemon_config()
    client = DaemonClient(config.url, timeout=min(REQUEST_TIMEOUT, config.timeout))
    catalog = client.catalog()  # also the reachability check, before state is touched
    max_images = int((catalog.get("limits") or {}).get("max_images") or 1)
    controls = Controls.from_args(args)
    prompts, negatives = glue.prompts(p)
    seed = glue.fixed_seed(p.seed)
    p.all_seeds = [(seed + i) % SEED_SPACE for i in range(len(prompts))]
    request = base_request(p, controls)
    state = glue.state()
    progress = Progress(state, p.steps, p.n_iter)
    out: dict[str, list] = {"images": [], "seeds": [], "prompts": [], "negatives": [],
                            "infotexts": []}

    def follow(body: dict) -> dict:
        return client.run(body, on_progress=progress.update,
                          should_cancel=progress.cancel_requested, poll_interval=POLL_INTERVAL,
                          timeout=config.timeout, client_name=CLIENT_NAME)

    def download(file: dict) -> Any:
        return encode.decode(client.download(file["url"]))

    hires = upscale.hires_of(p, bool(catalog.get("upscale")))
    if hires is not None:
        glue.note_hires(p, hires.said, hires.note)
    try:
        progress.start()
        for n, chunks in enumerate(plan(p.n_iter, p.batch_size, prompts, negatives,
                                        max_images)):
            if progress.stop_requested():
                break
            progress.batch(n)
            try:
                for chunk in chunks:
                    job = follow({**request, "prompt": prompts[chunk.start],
                                  "negative_prompt": negatives[chunk.start], "n": chunk.count,
                                  "seed": p.all_seeds[chunk.start]})
                    hashes = [i["hash"] for i in job["images"]]
                    extra: dict[str, Any] = {}
                    if hires is not None:   # Hires. fix says how; the script's upscale waits
                        images = upscale.apply(hires, [download(i) for i in job["images"]],
                                               hashes, follow, download, glue.resize_image)
                        extra = hires.said
                    elif controls.upscale:
                        images = [download(i) for i in follow({
                            "kind": "upscale", "scale": controls.upscale,
                            "images": hashes})["images"]]
                        extra = {infotext.UPSCALE_KEY: controls.upscale}
                    else:
                        images = [download(i) for i in job["images"]]
                    _collect(p, job, images, chunk, prompts, negatives, out, extra)
            except JobCancelled:
                if not (state.interrupted or state.skipped):
                    raise
            progress.next_batch()
    finally:
        progress.finish()
    return glue.processed(p, out["images"], out["seeds"], out["prompts"], out["negatives"],
                          out["infotexts"])


def _collect(p: Any, job: dict, images: list, chunk: Chunk, prompts: list[str],
             negatives: list[str], out: dict[str, list], extra: dict[str, Any]) -> None:
    """Add a job's images (its own, or upscaled) to the run; ``extra``: what the infotext
    says of the upscale."""
    save = glue.should_save(p)
    for k, (meta, image) in enumerate(zip(job["images"], images)):
        index = chunk.start + k
        text = infotext.build(prompts[index], negatives[index], {
            **infotext.params(job.get("request") or {}, meta, job["id"]), **extra})
        glue.attach_infotext(image, text)
        if save:
            glue.save_image(p, image, meta["seed"], prompts[index], text)
        glue.preview(image)
        out["images"].append(image)
        out["seeds"].append(meta["seed"])
        out["prompts"].append(prompts[index])
        out["negatives"].append(negatives[index])
        out["infotexts"].append(text)
