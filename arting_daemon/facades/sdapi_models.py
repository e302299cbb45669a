"""AUTOMATIC1111's request bodies for ``txt2img`` and ``img2img``, as its API declares them.

Every field A1111 knows is here with A1111's default, so ``parameters`` in the answer
echoes the request with the defaults filled in, exactly as A1111 does. As in A1111
(pydantic v1), unknown keys are ignored, ``null`` means "the default", numbers are
accepted where strings are expected, and a value of the wrong type is a 422.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


def _null_is_default(cls: type[BaseModel], data: Any) -> Any:
    """``"steps": null`` means the default, not a type error."""
    if isinstance(data, dict):
        return {k: v for k, v in data.items()
                if v is not None or k not in cls.model_fields
                or cls.model_fields[k].default is None}
    return data


class Txt2ImgRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)

    prompt: str = ""
    negative_prompt: str = ""
    styles: list[str] | None = None
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    sampler_name: str | None = None
    #: API-only and "Euler" by default, so an unset sampler means Euler (as in A1111).
    sampler_index: str = "Euler"
    scheduler: str | None = None
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 50
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    restore_faces: bool | None = None
    tiling: bool | None = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    eta: float | None = None
    denoising_strength: float = 0.75
    s_min_uncond: float | None = None
    s_churn: float | None = None
    s_tmax: float | None = None
    s_tmin: float | None = None
    s_noise: float | None = None
    override_settings: dict[str, Any] | None = None
    override_settings_restore_afterwards: bool = True
    refiner_checkpoint: str | None = None
    refiner_switch_at: float | None = None
    disable_extra_networks: bool = False
    firstpass_image: str | None = None
    comments: dict[str, Any] | None = None
    enable_hr: bool = False
    firstphase_width: int = 0
    firstphase_height: int = 0
    hr_scale: float = 2.0
    hr_upscaler: str | None = None
    hr_second_pass_steps: int = 0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    hr_checkpoint_name: str | None = None
    hr_sampler_name: str | None = None
    hr_scheduler: str | None = None
    hr_prompt: str = ""
    hr_negative_prompt: str = ""
    force_task_id: str | None = None
    infotext: str | None = None
    script_name: str | None = None
    script_args: list[Any] = []
    alwayson_scripts: dict[str, Any] = {}
    send_images: bool = True
    save_images: bool = False

    @model_validator(mode="before")
    @classmethod
    def _null_is_default(cls, data: Any) -> Any:
        return _null_is_default(cls, data)

    @property
    def sampler(self) -> str:
        return self.sampler_name or self.sampler_index

    @property
    def images(self) -> int:
        return self.batch_size * self.n_iter

    def parameters(self) -> dict[str, Any]:
        """The ``parameters`` echo of the answer."""
        return self.model_dump()


class Img2ImgRequest(Txt2ImgRequest):
    init_images: list[str] | None = None
    resize_mode: int = 0
    image_cfg_scale: float | None = None
    mask: str | None = None
    mask_blur_x: int = 4
    mask_blur_y: int = 4
    mask_blur: int | None = None
    mask_round: bool = True
    inpainting_fill: int = 0
    inpaint_full_res: bool = True
    inpaint_full_res_padding: int = 0
    inpainting_mask_invert: int = 0
    initial_noise_multiplier: float | None = None
    latent_mask: str | None = None
    include_init_images: bool = False

    def parameters(self) -> dict[str, Any]:
        """Like A1111, the images themselves are echoed only with ``include_init_images``."""
        echo = self.model_dump()
        if not self.include_init_images:
            echo["init_images"] = echo["mask"] = None
        return echo


class ExtrasOptions(BaseModel):
    """What ``extra-single-image`` and ``extra-batch-images`` share (A1111's
    ``ExtrasBaseRequest``). Only the upscale is done here; face restoration is not."""

    model_config = ConfigDict(extra="ignore")

    resize_mode: int = 0
    show_extras_results: bool = True
    gfpgan_visibility: float = 0
    codeformer_visibility: float = 0
    codeformer_weight: float = 0
    upscaling_resize: float = 2
    upscaling_resize_w: int = 512
    upscaling_resize_h: int = 512
    upscaling_crop: bool = True
    upscaler_1: str | None = "None"
    upscaler_2: str | None = "None"
    extras_upscaler_2_visibility: float = 0
    upscale_first: bool = False

    @model_validator(mode="before")
    @classmethod
    def _null_is_default(cls, data: Any) -> Any:
        return _null_is_default(cls, data)


class ExtrasSingleImageRequest(ExtrasOptions):
    image: str = ""


class ExtrasImage(BaseModel):
    data: str
    name: str = ""


class ExtrasBatchImagesRequest(ExtrasOptions):
    imageList: list[ExtrasImage] = []
