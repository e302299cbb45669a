"""The requests of AUTOMATIC1111's own API tests (the ``test/`` folder of the WebUI's
repository: txt2img, img2img, extras, options and the GET routes), in our words, against
the daemon + emulator; and what they need beyond success: every A1111 option with its
default, the ``SD upscale`` script, A1111's wording for scripts it does not have.
``tests/webui/test_a1111_own_suite.py`` runs the WebUI's own files when a checkout is
at hand."""

from __future__ import annotations

import base64
import io
import json

import httpx
import pytest
from PIL import Image
from test_sdapi import decode_png, sd

from arting_daemon.facades.sdapi import A1111_DEFAULTS, DAEMON_OPTIONS


def png_data_url(size=(64, 64), mode="RGBA") -> str:
    buf = io.BytesIO()
    Image.new(mode, size, (200, 40, 40, 255) if mode == "RGBA" else 255).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


#: The body A1111's txt2img tests start from (sizes below the daemon's minimum on purpose).
TXT2IMG = {"batch_size": 1, "cfg_scale": 7, "denoising_strength": 0, "enable_hr": False,
           "eta": 0, "firstphase_height": 0, "firstphase_width": 0, "height": 64, "n_iter": 1,
           "negative_prompt": "", "prompt": "example prompt", "restore_faces": False,
           "s_churn": 0, "s_noise": 1, "s_tmax": 0, "s_tmin": 0, "sampler_index": "Euler a",
           "seed": -1, "seed_resize_from_h": -1, "seed_resize_from_w": -1, "steps": 3,
           "styles": [], "subseed": -1, "subseed_strength": 0, "tiling": False, "width": 64}


@pytest.mark.parametrize("change", [
    {}, {"negative_prompt": "example negative prompt"},
    {"prompt": "((emphasis)), (emphasis1:1.1), [to:1], [from::2], [from:to:0.3], [alt|alt1]"},
    {"height": 128}, {"enable_hr": True}, {"tiling": True}, {"restore_faces": True},
    {"sampler_index": "PLMS"}, {"sampler_index": "DDIM"}, {"sampler_index": "UniPC"},
    {"n_iter": 2}, {"batch_size": 2},
], ids=["simple", "negative", "complex-prompt", "not-square", "hires-fix", "tiling",
        "restore-faces", "plms", "ddim", "unipc", "two-iterations", "batch-of-two"])
def test_txt2img_requests_of_a1111s_suite(daemon, change):
    resp = httpx.post(sd(daemon, "txt2img"), json={**TXT2IMG, **change}, timeout=60)
    assert resp.status_code == 200, resp.text
    count = change.get("n_iter", 1) * change.get("batch_size", 1)
    assert len(resp.json()["images"]) == count


def img2img_body(**change) -> dict:
    return {**TXT2IMG, "denoising_strength": 0.75, "include_init_images": False,
            "init_images": [png_data_url()], "inpaint_full_res": False,
            "inpaint_full_res_padding": 0, "inpainting_fill": 0, "inpainting_mask_invert": False,
            "mask": None, "mask_blur": 4, "override_settings": {}, "resize_mode": 0, **change}


@pytest.mark.parametrize("change", [
    {}, {"mask": png_data_url(mode="L")},
    {"mask": png_data_url(mode="L"), "inpainting_mask_invert": True},
    {"script_name": "sd upscale", "script_args": ["", 8, "Lanczos", 2.0]},
], ids=["simple", "inpaint", "inpaint-inverted", "sd-upscale"])
def test_img2img_requests_of_a1111s_suite(daemon, change):
    resp = httpx.post(sd(daemon, "img2img"), json=img2img_body(**change), timeout=60)
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["images"]) == 1


@pytest.mark.parametrize("body", [
    {"resize_mode": 0, "show_extras_results": True, "gfpgan_visibility": 0,
     "codeformer_visibility": 0, "codeformer_weight": 0, "upscaling_resize": 2,
     "upscaling_resize_w": 128, "upscaling_resize_h": 128, "upscaling_crop": True,
     "upscaler_1": "Lanczos", "upscaler_2": "None", "extras_upscaler_2_visibility": 0},
    {}, {"model": "clip"},
], ids=["lanczos", "png-info", "interrogate"])
def test_extras_requests_of_a1111s_suite(daemon, body):
    resp = httpx.post(sd(daemon, "extra-single-image"),
                      json={**body, "image": png_data_url()}, timeout=60)
    assert resp.status_code == 200, resp.text
    size = decode_png(resp.json()["image"]).size
    assert size == ((128, 128) if body.get("upscaler_1") == "Lanczos" else (64, 64))


@pytest.mark.parametrize("path", ["cmd-flags", "samplers", "upscalers", "sd-models",
                                  "hypernetworks", "face-restorers", "realesrgan-models",
                                  "prompt-styles", "embeddings"])
def test_get_routes_of_a1111s_suite(daemon, path):
    assert httpx.get(sd(daemon, path)).status_code == 200


# --- options --------------------------------------------------------------------------------

def test_every_a1111_option_with_its_default_and_the_daemons_own_values(daemon):
    options = httpx.get(sd(daemon, "options")).json()
    assert len(A1111_DEFAULTS) > 300 and set(A1111_DEFAULTS) <= set(options)
    for key, value in A1111_DEFAULTS.items():
        assert options[key] == DAEMON_OPTIONS.get(key, value), key
    # those the daemon acts on say what it does: no grid, no previews, its clip skip
    assert (options["return_grid"], options["live_previews_enable"]) == (False, False)
    assert options["CLIP_stop_at_last_layers"] == 2 and options["send_seed"] is True
    assert "forge_preset" not in options


def test_options_keep_what_clients_write(daemon):
    """A1111's own test: flip ``send_seed``, read it back, flip it again."""
    before = httpx.get(sd(daemon, "options")).json()["send_seed"]
    assert httpx.post(sd(daemon, "options"), json={"send_seed": not before}).status_code == 200
    assert httpx.get(sd(daemon, "options")).json()["send_seed"] is (not before)
    httpx.post(sd(daemon, "options"), json={"send_seed": before})
    assert httpx.get(sd(daemon, "options")).json()["send_seed"] is before


# --- scripts --------------------------------------------------------------------------------

def test_only_sd_upscale_is_listed_and_described(daemon):
    assert httpx.get(sd(daemon, "scripts")).json() == {"txt2img": [],
                                                       "img2img": ["sd upscale"]}
    (info,) = httpx.get(sd(daemon, "script-info")).json()
    assert (info["name"], info["is_img2img"], len(info["args"])) == ("sd upscale", True, 4)
    assert info["args"][2]["choices"] == ["None", "Lanczos", "Nearest", "Arting"]


@pytest.mark.parametrize("upscaler, factor, final", [
    ("Lanczos", 2.0, (128, 128)), (3, 2.0, (128, 128)), ("arting", 3.0, (192, 192)),
    ("None", 1.5, (64, 64)),
])
def test_sd_upscale_redraws_then_upscales_to_a1111s_size(daemon, upscaler, factor, final):
    """A1111's size: the init image × the factor (sides down to multiples of 8; with
    ``None``, as it is). Arting redraws the init image at its own size (here the daemon's
    smallest, 256)."""
    resp = httpx.post(sd(daemon, "img2img"), timeout=60, json=img2img_body(
        seed=5, script_name="SD upscale", script_args=["", 32, upscaler, factor]))
    assert resp.status_code == 200, resp.text
    assert decode_png(resp.json()["images"][0]).size == final
    (create,) = daemon.sandbox.requests_for("i2i_create")
    assert (create.body["width"], create.body["height"]) == (256, 256)
    enhanced = daemon.sandbox.requests_for("enhance_create")
    assert len(enhanced) == (1 if upscaler in ("arting", 3) else 0)
    name = "Arting" if upscaler in ("arting", 3) else upscaler
    infotext = json.loads(resp.json()["info"])["infotexts"][0]
    assert f"SD upscale overlap: 32, SD upscale upscaler: {name}" in infotext


@pytest.mark.parametrize("path, body, detail", [
    ("txt2img", {"script_name": "sd upscale"}, "Script 'sd upscale' not found"),
    ("txt2img", {"script_name": "X/Y/Z plot"}, "Script 'X/Y/Z plot' not found"),
    ("img2img", {"script_name": "Loopback", "init_images": [png_data_url()]},
     "Script 'Loopback' not found"),
    ("txt2img", {"alwayson_scripts": {"ADetailer": {"args": []}}},
     "always on script ADetailer not found"),
])
def test_other_scripts_are_refused_in_a1111s_words(daemon, path, body, detail):
    """As A1111 answers (its HTTPException: `errors` empty), before anything is made."""
    resp = httpx.post(sd(daemon, path), json={"prompt": "p", **body})
    assert resp.status_code == 422
    assert resp.json() == {"error": "HTTPException", "detail": detail, "body": "",
                           "errors": ""}
    assert daemon.sandbox.requests_for("create") == []
