"""Stand-ins for the SD-WebUI modules the extension touches, in two profiles.

Written for these tests from the hosts' public signatures (A1111 1.6–1.10 as merged
into Forge, and Forge HEAD): ``modules.scripts`` (``Script``, the loader and the
script runner's UI/API bookkeeping), ``modules.processing`` (``Processed`` with each
profile's own signature, the ``p`` dataclasses, ``get_fixed_seed``), ``modules.shared``
(``opts`` with ``OptionInfo``/``add_option``, ``state`` with the real field names,
``cmd_opts``, ``prompt_styles``, ``sd_upscalers``, ``latent_upscale_modes``),
``modules.upscaler`` (``Upscaler``'s ``upscale`` loop, ``UpscalerData``, the built-in
None/Lanczos/Nearest; the list made from its subclasses as ``modelloader`` makes it,
and the Extras tab's use of it), ``modules.images.save_image`` and ``resize_image``,
``modules.script_callbacks``, ``modules.errors`` and ``gradio`` (3.41 for A1111, 4.40
for Forge, with the constructor arguments of those releases: gradio 3 warns about keyword
arguments it does not know, gradio 4 refuses them; a callable ``value`` is evaluated at
once and kept as the page-load function, as both do).

Profiles: ``a1111`` is the oldest target (1.6: gradio 3, no ``stopping_generation``,
``on_ui_settings`` without ``name``); ``forge`` has gradio 4, ``Processed(...,
extra_images_list=[])``, ``stop_generating`` and — as in some Forge versions — no
``p.setup_prompts``.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import os
import random
import sys
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from PIL import PngImagePlugin


@dataclass(frozen=True)
class Profile:
    name: str
    gradio: int
    extra_images_list: bool
    setup_prompts: bool
    stopping_generation: bool
    settings_callback_name: bool


A1111 = Profile("a1111", gradio=3, extra_images_list=False, setup_prompts=True,
                stopping_generation=False, settings_callback_name=False)
FORGE = Profile("forge", gradio=4, extra_images_list=True, setup_prompts=False,
                stopping_generation=True, settings_callback_name=True)
PROFILES = (A1111, FORGE)


# --- gradio -------------------------------------------------------------------------------

_BLOCK = {"label", "info", "every", "show_label", "container", "scale", "min_width",
          "interactive", "visible", "elem_id", "elem_classes"}
#: what gradio 4.40 components took on beside their 3.41 arguments
_G4 = {"inputs", "render", "key"}
_G4_LAYOUT = {"elem_classes", "render"}
#: name → (positional parameters, keywords gradio 3.41 takes, keywords only 4.40 takes)
GRADIO_SIGNATURES: dict[str, tuple[tuple[str, ...], set[str], set[str]]] = {
    "Textbox": (("value",), _BLOCK | {"lines", "max_lines", "placeholder", "type",
                                      "autofocus", "text_align", "rtl", "show_copy_button"},
                _G4 | {"autoscroll"}),
    "Number": (("value",), _BLOCK | {"precision", "minimum", "maximum", "step"}, _G4),
    "Slider": (("minimum", "maximum", "value"), _BLOCK | {"step", "randomize"}, _G4),
    "Checkbox": (("value",), _BLOCK, _G4),
    "Dropdown": (("choices",), _BLOCK | {"value", "type", "multiselect",
                                         "allow_custom_value", "max_choices"},
                 _G4 | {"filterable"}),
    "Markdown": (("value",), {"rtl", "latex_delimiters", "visible", "elem_id", "elem_classes"},
                 _G4 | {"label", "every", "show_label", "sanitize_html", "line_breaks",
                        "header_links", "height", "show_copy_button"}),
    "HTML": (("value",), {"label", "every", "show_label", "visible", "elem_id",
                          "elem_classes"}, _G4),
    "Button": (("value",), {"variant", "size", "icon", "link", "visible", "interactive",
                            "elem_id", "elem_classes", "scale", "min_width"},
               _G4 | {"every"}),
    "Row": ((), {"variant", "visible", "elem_id", "equal_height"},
            _G4_LAYOUT | {"show_progress"}),
    "Column": ((), {"scale", "min_width", "variant", "visible", "elem_id"},
               _G4_LAYOUT | {"show_progress"}),
    "Group": ((), {"visible", "elem_id"}, _G4_LAYOUT),
    "Accordion": (("label",), {"open", "visible", "elem_id"}, _G4_LAYOUT),
}
GRADIO3_ONLY = {"Box"}
LAYOUTS = {"Row", "Column", "Group", "Accordion", "Box"}


def make_gradio(major: int) -> types.ModuleType:
    gr = types.ModuleType("gradio")
    gr.__version__ = "3.41.2" if major == 3 else "4.40.0"
    gr.created = []

    class Block:
        kind = "Block"

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            positional, g3, g4_extra = GRADIO_SIGNATURES.get(self.kind, ((), {"visible",
                                                                               "elem_id"}, set()))
            if len(args) > len(positional):
                raise TypeError(f"{self.kind}() takes {len(positional)} positional arguments")
            kwargs.update(zip(positional, args))
            allowed = set(positional) | g3 | (g4_extra if major == 4 else set())
            unknown = {k: v for k, v in kwargs.items() if k not in allowed}
            if unknown and major == 4:
                raise TypeError(f"{self.kind}.__init__() got an unexpected keyword argument "
                                f"'{next(iter(unknown))}'")
            if unknown:
                warnings.warn(f"You have unused kwarg parameters in {self.kind}, please "
                              f"remove them: {unknown}", UserWarning, stacklevel=2)
            self.kwargs = kwargs
            self.listeners: list[dict] = []
            self.load_fn = None
            value = kwargs.get("value")
            if callable(value):
                # gradio evaluates a callable value at once and again on every page load
                self.load_fn, value = value, value()
            self.value = value
            for name in ("label", "choices", "minimum", "maximum", "step", "elem_id"):
                setattr(self, name, kwargs.get(name))
            gr.created.append(self)

        def __enter__(self):
            return self

        def __exit__(self, *exc: Any) -> None:
            return None

        def _listen(self, event: str, fn: Callable | None = None, inputs: Any = None,
                    outputs: Any = None, **kwargs: Any) -> dict:
            allowed = {"_js", "show_progress", "queue", "preprocess", "postprocess",
                       "api_name"} if major == 3 else {"js", "show_progress", "queue",
                                                       "preprocess", "postprocess",
                                                       "api_name", "trigger_mode"}
            if set(kwargs) - allowed:
                raise TypeError(f"{event}() got unexpected arguments {set(kwargs) - allowed}")
            listener = {"event": event, "fn": fn, "inputs": inputs, "outputs": outputs}
            self.listeners.append(listener)
            return listener

        def click(self, *args: Any, **kwargs: Any) -> dict:
            return self._listen("click", *args, **kwargs)

        def change(self, *args: Any, **kwargs: Any) -> dict:
            return self._listen("change", *args, **kwargs)

    names = set(GRADIO_SIGNATURES) | (GRADIO3_ONLY if major == 3 else set())
    for name in names:
        setattr(gr, name, type(name, (Block,), {"kind": name}))
    gr.Block = Block

    def update(**kwargs: Any) -> dict:
        return {"__type__": "update", **kwargs}

    gr.update = update
    return gr


# --- modules.shared: options, state, styles -----------------------------------------------

class OptionInfo:
    def __init__(self, default=None, label="", component=None, component_args=None,
                 onchange=None, section=None, refresh=None, comment_before="",
                 comment_after="", infotext=None, restrict_api=False, category_id=None):
        self.default, self.label = default, label
        self.component, self.component_args = component, component_args
        self.onchange, self.section, self.refresh = onchange, section, refresh
        self.comment_before, self.comment_after = comment_before, comment_after
        self.infotext, self.restrict_api, self.category_id = infotext, restrict_api, category_id
        self.do_not_save = False

    def link(self, label, url):
        self.comment_before += f"[<a href='{url}' target='_blank'>{label}</a>]"
        return self

    def info(self, info):
        self.comment_after += f"<span class='info'>({info})</span>"
        return self

    def needs_restart(self):
        self.comment_after += " <span class='info'>(requires restart)</span>"
        return self

    def needs_reload_ui(self):
        self.comment_after += " <span class='info'>(requires Reload UI)</span>"
        return self


def options_section(section_identifier, options_dict):
    for value in options_dict.values():
        value.section = section_identifier[:2]
        if len(section_identifier) == 3:
            value.category_id = section_identifier[2]
    return options_dict


class Options:
    """``shared.opts``: values in ``data``, defaults in ``data_labels``; an unknown name
    raises AttributeError, as in the host."""

    _builtin = {"data", "data_labels"}

    def __init__(self, data_labels: dict[str, OptionInfo]) -> None:
        object.__setattr__(self, "data_labels", data_labels)
        object.__setattr__(self, "data", {k: v.default for k, v in data_labels.items()})

    def __setattr__(self, key: str, value: Any) -> None:
        if key in self.data or key in self.data_labels:
            self.data[key] = value
            return
        object.__setattr__(self, key, value)

    def __getattr__(self, item: str) -> Any:
        if item in self._builtin:
            return object.__getattribute__(self, item)
        if item in self.data:
            return self.data[item]
        if item in self.data_labels:
            return self.data_labels[item].default
        return object.__getattribute__(self, item)

    def add_option(self, key: str, info: OptionInfo) -> None:
        self.data_labels[key] = info
        if key not in self.data and not info.do_not_save:
            self.data[key] = info.default

    def set(self, key: str, value: Any, is_api: bool = False, run_callbacks: bool = True) -> bool:
        if self.data.get(key) == value:
            return False
        self.data_labels[key]  # KeyError for an option nobody registered, as in the host
        self.data[key] = value
        return True


#: The host settings the extension may read, with the host's defaults.
HOST_OPTIONS = {
    "samples_save": True, "samples_format": "png", "enable_pnginfo": True,
    "save_incomplete_images": False, "CLIP_stop_at_last_layers": 1,
    "face_restoration_model": None, "img2img_background_color": "#ffffff",
    "live_previews_enable": True, "show_progress_every_n_steps": 10,
    "ESRGAN_tile": 192, "ESRGAN_tile_overlap": 8, "upscaler_for_img2img": None,
}
LATENT_UPSCALE_MODES = ("Latent", "Latent (antialiased)", "Latent (bicubic)",
                        "Latent (bicubic antialiased)", "Latent (nearest)",
                        "Latent (nearest-exact)")

STATE_FIELDS = ("job", "job_no", "job_count", "sampling_step", "sampling_steps", "textinfo",
                "interrupted", "skipped", "stopping_generation", "current_image")


def make_state_class(profile: Profile, opts: Options) -> type:
    class State:
        skipped = False
        interrupted = False
        job = ""
        job_no = 0
        job_count = 0
        processing_has_refined_job_count = False
        job_timestamp = "0"
        sampling_step = 0
        sampling_steps = 0
        current_latent = None
        current_image = None
        current_image_sampling_step = 0
        id_live_preview = 0
        textinfo = None
        time_start = None
        server_start = None

        def __init__(self) -> None:
            object.__setattr__(self, "history", [])

        def __setattr__(self, name: str, value: Any) -> None:
            if name in STATE_FIELDS:
                self.history.append((name, value))
            object.__setattr__(self, name, value)

        def seen(self, name: str) -> list:
            return [v for n, v in self.history if n == name]

        def skip(self) -> None:
            self.skipped = True

        def interrupt(self) -> None:
            self.interrupted = True

        def nextjob(self) -> None:
            if opts.live_previews_enable and opts.show_progress_every_n_steps == -1:
                pass  # the host would decode a latent preview here
            self.job_no += 1
            self.sampling_step = 0
            self.current_image_sampling_step = 0

        def begin(self, job: str = "(unknown)") -> None:
            self.sampling_step = 0
            self.job_count = -1
            self.processing_has_refined_job_count = False
            self.job_no = 0
            self.job_timestamp = "20240101000000"
            self.current_latent = None
            self.current_image = None
            self.current_image_sampling_step = 0
            self.id_live_preview = 0
            self.skipped = False
            self.interrupted = False
            if profile.stopping_generation:
                self.stopping_generation = False
            self.textinfo = None
            self.job = job

        def end(self) -> None:
            self.job = ""
            self.job_count = 0

        def assign_current_image(self, image: Any) -> None:
            self.current_image = image
            self.id_live_preview += 1

    if profile.stopping_generation:
        State.stopping_generation = False

        def stop_generating(self) -> None:
            self.stopping_generation = True

        State.stop_generating = stop_generating
    return State


class StyleDatabase:
    """``shared.prompt_styles``: ``{prompt}`` in a style is replaced by the prompt,
    otherwise the style is appended with a comma."""

    def __init__(self, styles: dict[str, tuple[str, str]]) -> None:
        self.styles = styles

    @staticmethod
    def _merge(style: str, prompt: str) -> str:
        if "{prompt}" in style:
            return style.replace("{prompt}", prompt)
        return ", ".join(x for x in (prompt, style) if x)

    def apply_styles_to_prompt(self, prompt: str, styles: list[str]) -> str:
        for name in styles:
            prompt = self._merge(self.styles[name][0], prompt)
        return prompt

    def apply_negative_styles_to_prompt(self, prompt: str, styles: list[str]) -> str:
        for name in styles:
            prompt = self._merge(self.styles[name][1], prompt)
        return prompt


# --- modules.processing ------------------------------------------------------------------

def make_processing(profile: Profile, shared: types.ModuleType) -> types.ModuleType:
    processing = types.ModuleType("modules.processing")
    opts, styles = shared.opts, shared.prompt_styles

    @dataclass(repr=False)
    class StableDiffusionProcessing:
        sd_model: object = None
        outpath_samples: str = None
        outpath_grids: str = None
        prompt: str = ""
        prompt_for_display: str = None
        negative_prompt: str = ""
        styles: list = None
        seed: int = -1
        subseed: int = -1
        subseed_strength: float = 0
        seed_resize_from_h: int = -1
        seed_resize_from_w: int = -1
        seed_enable_extras: bool = True
        sampler_name: str = None
        scheduler: str = None
        batch_size: int = 1
        n_iter: int = 1
        steps: int = 50
        cfg_scale: float = 7.0
        width: int = 512
        height: int = 512
        restore_faces: bool = None
        tiling: bool = None
        do_not_save_samples: bool = False
        do_not_save_grid: bool = False
        extra_generation_params: dict = None
        overlay_images: list = None
        eta: float = None
        do_not_reload_embeddings: bool = False
        denoising_strength: float = None
        ddim_discretize: str = None
        s_min_uncond: float = None
        s_churn: float = None
        s_tmax: float = None
        s_tmin: float = None
        s_noise: float = None
        override_settings: dict = None
        override_settings_restore_afterwards: bool = True
        sampler_index: int = None
        refiner_checkpoint: str = None
        refiner_switch_at: float = None
        token_merging_ratio = 0
        token_merging_ratio_hr = 0
        disable_extra_networks: bool = False
        comments: dict = None
        is_using_inpainting_conditioning: bool = field(default=False, init=False)
        all_prompts: list = field(default=None, init=False)
        all_negative_prompts: list = field(default=None, init=False)
        all_seeds: list = field(default=None, init=False)
        all_subseeds: list = field(default=None, init=False)
        iteration: int = field(default=0, init=False)
        main_prompt: str = field(default=None, init=False)
        main_negative_prompt: str = field(default=None, init=False)
        user: str = field(default=None, init=False)
        sd_model_name: str = field(default=None, init=False)
        sd_model_hash: str = field(default=None, init=False)
        sd_vae_name: str = field(default=None, init=False)
        sd_vae_hash: str = field(default=None, init=False)
        is_api: bool = field(default=False, init=False)

        def __post_init__(self) -> None:
            self.comments = {}
            if self.styles is None:
                self.styles = []
            self.sampler_noise_scheduler_override = None
            self.extra_generation_params = self.extra_generation_params or {}
            self.override_settings = self.override_settings or {}

        def comment(self, text: str) -> None:
            self.comments[text] = 1

        def get_token_merging_ratio(self, for_hr: bool = False) -> float:
            return self.token_merging_ratio

        def save_samples(self) -> bool:
            state = shared.state
            return (opts.samples_save and not self.do_not_save_samples
                    and (opts.save_incomplete_images
                         or not state.interrupted and not state.skipped))

    def setup_prompts(self) -> None:
        if isinstance(self.prompt, list):
            self.all_prompts = self.prompt
        else:
            self.all_prompts = self.batch_size * self.n_iter * [self.prompt]
        if isinstance(self.negative_prompt, list):
            self.all_negative_prompts = self.negative_prompt
        else:
            self.all_negative_prompts = [self.negative_prompt] * len(self.all_prompts)
        self.all_prompts = [styles.apply_styles_to_prompt(x, self.styles)
                            for x in self.all_prompts]
        self.all_negative_prompts = [styles.apply_negative_styles_to_prompt(x, self.styles)
                                     for x in self.all_negative_prompts]
        self.main_prompt = self.all_prompts[0]
        self.main_negative_prompt = self.all_negative_prompts[0]

    if profile.setup_prompts:
        StableDiffusionProcessing.setup_prompts = setup_prompts

    @dataclass(repr=False)
    class StableDiffusionProcessingTxt2Img(StableDiffusionProcessing):
        enable_hr: bool = False
        denoising_strength: float = 0.75
        firstphase_width: int = 0
        firstphase_height: int = 0
        hr_scale: float = 2.0
        hr_upscaler: str = None
        hr_second_pass_steps: int = 0
        hr_resize_x: int = 0
        hr_resize_y: int = 0
        hr_checkpoint_name: str = None
        hr_sampler_name: str = None
        hr_scheduler: str = None
        hr_prompt: str = ""
        hr_negative_prompt: str = ""

    @dataclass(repr=False)
    class StableDiffusionProcessingImg2Img(StableDiffusionProcessing):
        init_images: list = None
        resize_mode: int = 0
        denoising_strength: float = 0.75
        image_cfg_scale: float = None
        mask: Any = None
        mask_blur_x: int = 4
        mask_blur_y: int = 4
        mask_round: bool = True
        inpainting_fill: int = 0
        inpaint_full_res: bool = True
        inpaint_full_res_padding: int = 0
        inpainting_mask_invert: int = 0
        initial_noise_multiplier: float = None
        latent_mask: Any = None
        image_mask: Any = field(default=None, init=False)

        def __post_init__(self) -> None:
            super().__post_init__()
            self.image_mask = self.mask
            self.mask = None

        @property
        def mask_blur(self):
            return self.mask_blur_x if self.mask_blur_x == self.mask_blur_y else None

    def get_fixed_seed(seed):
        if seed == "" or seed is None:
            seed = -1
        elif isinstance(seed, str):
            try:
                seed = int(seed)
            except ValueError:
                seed = -1
        if seed == -1:
            return int(random.randrange(4294967294))
        return seed

    def processed_init(self, p, images_list, seed=-1, info="", subseed=None, all_prompts=None,
                       all_negative_prompts=None, all_seeds=None, all_subseeds=None,
                       index_of_first_image=0, infotexts=None, comments=""):
        self.images = images_list
        self.prompt = p.prompt
        self.negative_prompt = p.negative_prompt
        self.seed = seed
        self.subseed = subseed
        self.subseed_strength = p.subseed_strength
        self.info = info
        self.comments = "".join(f"{comment}\n" for comment in p.comments)
        self.width, self.height = p.width, p.height
        self.sampler_name, self.cfg_scale = p.sampler_name, p.cfg_scale
        self.image_cfg_scale = getattr(p, "image_cfg_scale", None)
        self.steps, self.batch_size = p.steps, p.batch_size
        self.restore_faces = p.restore_faces
        self.face_restoration_model = opts.face_restoration_model if p.restore_faces else None
        self.sd_model_name, self.sd_model_hash = p.sd_model_name, p.sd_model_hash
        self.sd_vae_name, self.sd_vae_hash = p.sd_vae_name, p.sd_vae_hash
        self.seed_resize_from_w = p.seed_resize_from_w
        self.seed_resize_from_h = p.seed_resize_from_h
        self.denoising_strength = getattr(p, "denoising_strength", None)
        self.extra_generation_params = p.extra_generation_params
        self.index_of_first_image = index_of_first_image
        self.styles = p.styles
        self.job_timestamp = shared.state.job_timestamp
        self.clip_skip = opts.CLIP_stop_at_last_layers
        self.token_merging_ratio = p.token_merging_ratio
        self.token_merging_ratio_hr = p.token_merging_ratio_hr
        self.eta, self.ddim_discretize = p.eta, p.ddim_discretize
        self.s_churn, self.s_tmin, self.s_tmax = p.s_churn, p.s_tmin, p.s_tmax
        self.s_noise, self.s_min_uncond = p.s_noise, p.s_min_uncond
        self.sampler_noise_scheduler_override = p.sampler_noise_scheduler_override
        self.seed = int(self.seed if not isinstance(self.seed, list) else self.seed[0]) \
            if self.seed is not None else -1
        self.subseed = int(self.subseed) if self.subseed is not None else -1
        self.is_using_inpainting_conditioning = p.is_using_inpainting_conditioning
        self.all_prompts = all_prompts or p.all_prompts or [self.prompt]
        self.all_negative_prompts = (all_negative_prompts or p.all_negative_prompts
                                     or [self.negative_prompt])
        self.all_seeds = all_seeds or p.all_seeds or [self.seed]
        self.all_subseeds = all_subseeds or p.all_subseeds or [self.subseed]
        self.infotexts = infotexts or [info] * len(images_list)

    def js(self) -> str:
        return json.dumps({
            "prompt": self.all_prompts[0], "all_prompts": self.all_prompts,
            "negative_prompt": self.all_negative_prompts[0],
            "all_negative_prompts": self.all_negative_prompts, "seed": self.seed,
            "all_seeds": self.all_seeds, "subseed": self.subseed, "width": self.width,
            "height": self.height, "sampler_name": self.sampler_name,
            "cfg_scale": self.cfg_scale, "steps": self.steps, "batch_size": self.batch_size,
            "index_of_first_image": self.index_of_first_image, "infotexts": self.infotexts,
            "styles": self.styles, "job_timestamp": self.job_timestamp,
        }, default=lambda o: None)

    if profile.extra_images_list:
        # Forge's signature, mutable default included
        def init(self, p, images_list, seed=-1, info="", subseed=None, all_prompts=None,
                 all_negative_prompts=None, all_seeds=None, all_subseeds=None,
                 index_of_first_image=0, infotexts=None, comments="",
                 extra_images_list=[]):  # noqa: B006
            processed_init(self, p, images_list, seed, info, subseed, all_prompts,
                           all_negative_prompts, all_seeds, all_subseeds,
                           index_of_first_image, infotexts, comments)
            self.extra_images = extra_images_list
    else:
        init = processed_init

    processing.Processed = type("Processed", (), {"__init__": init, "js": js})
    processing.StableDiffusionProcessing = StableDiffusionProcessing
    processing.StableDiffusionProcessingTxt2Img = StableDiffusionProcessingTxt2Img
    processing.StableDiffusionProcessingImg2Img = StableDiffusionProcessingImg2Img
    processing.get_fixed_seed = get_fixed_seed
    return processing


# --- modules.upscaler ---------------------------------------------------------------------

def make_upscaler(shared: types.ModuleType) -> types.ModuleType:
    """``modules/upscaler.py``: the base class's loop (upscale until the factor is reached,
    at most three passes, stop on interrupt, then resize to the multiple-of-8 size) and
    the three built-in upscalers."""
    from PIL import Image

    upscaler = types.ModuleType("modules.upscaler")
    lanczos, nearest = Image.Resampling.LANCZOS, Image.Resampling.NEAREST

    class Upscaler:
        name = None
        model_path = None
        model_name = None
        model_url = None
        enable = True
        filter = None
        model = None
        user_path = None
        scalers: list
        tile = True

        def __init__(self, create_dirs=False):
            self.mod_pad_h = None
            self.tile_size = shared.opts.ESRGAN_tile
            self.tile_pad = shared.opts.ESRGAN_tile_overlap
            self.device = shared.device
            self.img = None
            self.output = None
            self.scale = 1
            self.half = not shared.cmd_opts.no_half
            self.pre_pad = 0
            self.mod_scale = None
            self.model_download_path = None
            if self.model_path is None and self.name:
                self.model_path = os.path.join(shared.models_path, self.name)
            if self.model_path and create_dirs:
                os.makedirs(self.model_path, exist_ok=True)

        def do_upscale(self, img, selected_model):
            return img

        def upscale(self, img, scale, selected_model=None):
            self.scale = scale
            dest_w = int((img.width * scale) // 8 * 8)
            dest_h = int((img.height * scale) // 8 * 8)
            for i in range(3):
                if img.width >= dest_w and img.height >= dest_h and (i > 0 or scale != 1):
                    break
                if shared.state.interrupted:
                    break
                shape = (img.width, img.height)
                img = self.do_upscale(img, selected_model)
                if shape == (img.width, img.height):
                    break
            if img.width != dest_w or img.height != dest_h:
                img = img.resize((int(dest_w), int(dest_h)), resample=lanczos)
            return img

        def load_model(self, path):
            pass

    class UpscalerData:
        name = None
        data_path = None
        scale: int = 4
        scaler = None

        def __init__(self, name, path, upscaler=None, scale=4, model=None):
            self.name, self.data_path, self.local_data_path = name, path, path
            self.scaler, self.scale, self.model = upscaler, scale, model

    def builtin(label, resample):
        class Builtin(Upscaler):
            scalers = []

            def __init__(self, dirname=None):
                super().__init__(False)
                self.name = label
                self.scalers = [UpscalerData(label, None, self)]

            def do_upscale(self, img, selected_model=None):
                if resample is None:
                    return img
                return img.resize((int(img.width * self.scale), int(img.height * self.scale)),
                                  resample=resample)
        Builtin.__name__ = Builtin.__qualname__ = f"Upscaler{label}"
        return Builtin

    upscaler.Upscaler, upscaler.UpscalerData = Upscaler, UpscalerData
    upscaler.UpscalerNone = builtin("None", None)
    upscaler.UpscalerLanczos = builtin("Lanczos", lanczos)
    upscaler.UpscalerNearest = builtin("Nearest", nearest)
    upscaler.LANCZOS, upscaler.NEAREST = lanczos, nearest
    return upscaler


# --- the host ----------------------------------------------------------------------------

@dataclass
class SavedImage:
    path: Path
    seed: Any
    prompt: Any
    extension: str
    info: Any
    p: Any


class Host:
    """One emulated SD-WebUI: its modules, output folder, and what it saw."""

    def __init__(self, profile: Profile, root: Path) -> None:
        self.profile = profile
        self.outdir = root / "outputs" / "txt2img-images"
        self.outdir.mkdir(parents=True)
        self.saved: list[SavedImage] = []
        self.reports: list[str] = []
        self.resized_with: list[str] = []
        self.callbacks: dict[str, list[Callable]] = {}
        self.gradio = make_gradio(profile.gradio)
        self.modules = self._build()

    # --- module construction --------------------------------------------------------

    def _build(self) -> dict[str, types.ModuleType]:
        pkg = types.ModuleType("modules")
        pkg.__path__ = []

        shared = types.ModuleType("modules.shared")
        shared.OptionInfo = OptionInfo
        shared.options_section = options_section
        shared.opts = Options({k: OptionInfo(v) for k, v in HOST_OPTIONS.items()})
        shared.state = make_state_class(self.profile, shared.opts)()
        shared.cmd_opts = argparse.Namespace(api=False, nowebui=False)
        shared.prompt_styles = StyleDatabase({
            "cinematic": ("{prompt}, cinematic lighting", "cartoon"),
            "sharp": ("sharp focus", "blurry"),
        })
        shared.total_tqdm = types.SimpleNamespace(clear=lambda: None)
        shared.device, shared.models_path = "cpu", str(self.outdir.parent / "models")
        shared.cmd_opts.no_half = False
        shared.sd_upscalers = []
        shared.latent_upscale_modes = {name: {} for name in LATENT_UPSCALE_MODES}

        processing = make_processing(self.profile, shared)
        upscaler = make_upscaler(shared)

        scripts = types.ModuleType("modules.scripts")
        scripts.AlwaysVisible = object()
        scripts.Script = _script_base()
        scripts.current_basedir = str(Path.cwd())
        scripts.basedir = lambda: scripts.current_basedir

        images = types.ModuleType("modules.images")
        images.save_image = self._save_image
        images.resize_image = self._resize_image

        callbacks = types.ModuleType("modules.script_callbacks")
        for hook in ("ui_settings", "ui_tabs", "app_started", "script_unloaded",
                     "before_ui", "image_saved"):
            setattr(callbacks, f"on_{hook}", self._recorder(hook))
        callbacks.clear_callbacks = self.callbacks.clear

        errors = types.ModuleType("modules.errors")

        def report(message: str, *, exc_info: bool = False) -> None:
            self.reports.append(message)

        errors.report = report

        mods = {"modules": pkg, "modules.shared": shared, "modules.processing": processing,
                "modules.scripts": scripts, "modules.images": images,
                "modules.upscaler": upscaler,
                "modules.script_callbacks": callbacks, "modules.errors": errors}
        for name, module in mods.items():
            if name != "modules":
                setattr(pkg, name.split(".")[1], module)
        mods["gradio"] = self.gradio
        return mods

    def _recorder(self, hook: str) -> Callable:
        def register(callback: Callable) -> None:
            self.callbacks.setdefault(hook, []).append(callback)

        if self.profile.settings_callback_name:
            def register_named(callback: Callable, *, name: str | None = None) -> None:
                register(callback)
            return register_named
        return register

    def _save_image(self, image, path, basename, seed=None, prompt=None, extension="png",
                    info=None, short_filename=False, no_prompt=False, grid=False,
                    pnginfo_section_name="parameters", p=None, existing_info=None,
                    forced_filename=None, suffix="", save_to_dirs=None):
        target = Path(path) / f"{len(self.saved):05d}-{seed}{suffix}.{extension}"
        pnginfo = PngImagePlugin.PngInfo()
        if info is not None and self.opts.enable_pnginfo:
            pnginfo.add_text(pnginfo_section_name, info)
        image.save(target, pnginfo=pnginfo)
        self.saved.append(SavedImage(target, seed, prompt, extension, info, p))
        return str(target), None

    def _resize_image(self, resize_mode, im, width, height, upscaler_name=None):
        """``images.resize_image`` in its mode 0 (what Hires. fix uses): the named upscaler
        (the first, None, when there is no such one), then the exact size."""
        assert resize_mode == 0
        upscaler_name = upscaler_name or self.opts.upscaler_for_img2img
        lanczos = self.modules["modules.upscaler"].LANCZOS
        if upscaler_name is None or upscaler_name == "None" or im.mode == "L":
            return im.resize((width, height), resample=lanczos)
        scale = max(width / im.width, height / im.height)
        if scale > 1.0:
            found = [x for x in self.shared.sd_upscalers if x.name == upscaler_name]
            upscaler = found[0] if found else self.shared.sd_upscalers[0]
            self.resized_with.append(upscaler.name)
            im = upscaler.scaler.upscale(im, scale, upscaler.data_path)
        if im.width != width or im.height != height:
            im = im.resize((width, height), resample=lanczos)
        return im

    def load_upscalers(self) -> list[str]:
        """``modelloader.load_upscalers``, after the scripts are loaded: every subclass of
        ``Upscaler`` (the newest of each name), made with the command line's model path,
        its ``scalers`` gathered; the built-in three first, the rest by name."""
        module = self.modules["modules.upscaler"]
        used: dict[str, type] = {}
        for cls in reversed(module.Upscaler.__subclasses__()):
            used.setdefault(str(cls), cls)
        data = []
        for cls in reversed(used.values()):
            cmd_name = f"{cls.__name__.lower().replace('upscaler', '')}_models_path"
            scaler = cls(getattr(self.shared.cmd_opts, cmd_name, None))
            data += scaler.scalers
        builtin = (module.UpscalerNone, module.UpscalerLanczos, module.UpscalerNearest)
        self.shared.sd_upscalers = sorted(
            data, key=lambda x: "" if isinstance(x.scaler, builtin) else x.name.lower())
        return [x.name for x in self.shared.sd_upscalers]

    def hires_choices(self) -> list[str]:
        """Hires. fix's upscaler dropdown: the latent modes, then every upscaler."""
        return [*self.shared.latent_upscale_modes, *(x.name for x in self.shared.sd_upscalers)]

    def extras(self, images: list, upscaler_1: str, upscaling_resize: float) -> list:
        """The Extras tab (one image, or a batch), as the WebUI's postprocessing runs it —
        also behind its ``extra-single-image``/``extra-batch-images`` API: the state begun
        for the job, one image after the other through the chosen upscaler's ``upscale``
        (stopping at an interrupt), the state ended."""
        self.state.begin(job="extras")
        try:
            self.state.job_count = len(images)
            upscaler = next(x for x in self.shared.sd_upscalers if x.name == upscaler_1)
            out = []
            for image in images:
                if self.state.interrupted:
                    break
                out.append(upscaler.scaler.upscale(image, upscaling_resize, upscaler.data_path))
                self.state.nextjob()
            return out
        finally:
            self.state.end()

    # --- shortcuts ------------------------------------------------------------------

    @property
    def shared(self) -> types.ModuleType:
        return self.modules["modules.shared"]

    @property
    def opts(self) -> Options:
        return self.shared.opts

    @property
    def state(self) -> Any:
        return self.shared.state

    @property
    def processing(self) -> types.ModuleType:
        return self.modules["modules.processing"]

    # --- what SD-WebUI does -----------------------------------------------------------

    def load_scripts(self, extension_dir: Path) -> list[type]:
        """``modules/scripts.py load_scripts`` for one extension: its folder in front of
        ``sys.path`` during the import, each ``scripts/*.py`` loaded under its file name,
        every ``Script`` subclass in it collected."""
        scripts = self.modules["modules.scripts"]
        self.callbacks.clear()
        found = []
        syspath = sys.path
        for path in sorted((extension_dir / "scripts").glob("*.py")):
            try:
                sys.path = [str(extension_dir)] + sys.path
                scripts.current_basedir = str(extension_dir)
                spec = importlib.util.spec_from_file_location(os.path.basename(path), path)
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                found += [c for c in module.__dict__.values()
                          if inspect.isclass(c) and issubclass(c, scripts.Script)
                          and c is not scripts.Script]
            finally:
                sys.path = syspath
                scripts.current_basedir = str(Path.cwd())
        return found

    def create_ui(self, script_class: type, is_img2img: bool) -> tuple[Any, list]:
        """The script runner's part of building the UI (and the API's script info)."""
        script = script_class()
        script.filename = "arting_remote.py"
        script.is_txt2img, script.is_img2img = not is_img2img, is_img2img
        script.tabname = "img2img" if is_img2img else "txt2img"
        assert script.show(is_img2img) is True
        controls = script.ui(is_img2img)
        script.name = script.title().lower()
        for control in controls:
            control.custom_script_source = os.path.basename(script.filename)
        script.api_args = [{"label": control.label or "", "value": control.value,
                            "choices": control.choices} for control in controls]
        return script, controls

    def settings_ui(self) -> None:
        """What building the settings page does: run every ``on_ui_settings`` callback."""
        for callback in self.callbacks.get("ui_settings", []):
            callback()

    def txt2img(self, **fields: Any) -> Any:
        fields.setdefault("outpath_samples", str(self.outdir))
        fields.setdefault("sampler_name", "Euler a")
        return self.processing.StableDiffusionProcessingTxt2Img(**fields)

    def img2img(self, **fields: Any) -> Any:
        fields.setdefault("outpath_samples", str(self.outdir))
        fields.setdefault("sampler_name", "Euler a")
        return self.processing.StableDiffusionProcessingImg2Img(**fields)

    def generate(self, script: Any, p: Any, *args: Any) -> Any:
        """``txt2img()`` with a script selected: the queue wrapper begins the state, the
        script runner calls ``run`` with the ui() values. (The wrapper's ``state.end()``
        is left to the test, which looks at the state first.)"""
        self.state.begin(job="txt2img")
        return script.run(p, *args)


def _script_base() -> type:
    class Script:
        name = None
        section = None
        filename = None
        args_from = None
        args_to = None
        alwayson = False
        is_txt2img = False
        is_img2img = False
        tabname = None
        group = None
        infotext_fields = None
        paste_field_names = None
        api_info = None

        def title(self):
            raise NotImplementedError()

        def ui(self, is_img2img):
            pass

        def show(self, is_img2img):
            return True

        def run(self, p, *args):
            pass

        def elem_id(self, item_id):
            import re
            need_tabname = self.show(True) == self.show(False)
            tabkind = "img2img" if self.is_img2img else "txt2img"
            tabname = f"{tabkind}_" if need_tabname else ""
            title = re.sub(r"[^a-z_0-9]", "", re.sub(r"\s", "_", self.title().lower()))
            return f"script_{tabname}{title}_{item_id}"

    return Script
