"""The "Arting Upscale" node (IMAGE in, IMAGE out), loaded as ComfyUI loads it and run
against a live daemon + Arting emulator over loopback sockets."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import torch

from comfy_harness import PACK, comfy_module_name
from processes import emulators

from arting_daemon.sandbox.midjourney import MidjourneyEmulator


@pytest.fixture
def upscaler(pack):
    return pack.NODE_CLASS_MAPPINGS["ArtingUpscale"]()


def picture(batch: int = 1, height: int = 48, width: int = 64) -> torch.Tensor:
    """A batch with a red left half and a blue ramp on the right, one shade per item."""
    images = torch.zeros(batch, height, width, 3)
    images[:, :, : width // 2, 0] = 1.0
    images[:, :, width // 2:, 2] = torch.linspace(0, 1, height)[:, None]
    images[:, :, :, 1] = torch.arange(batch)[:, None, None] / 10
    return images


def test_the_node_is_registered_beside_generate(pack):
    cls = pack.NODE_CLASS_MAPPINGS["ArtingUpscale"]
    assert cls.__module__ == f"{comfy_module_name(PACK)}.arting_comfy.nodes"
    assert (cls.CATEGORY, cls.RETURN_TYPES) == ("Arting", ("IMAGE",))
    assert callable(getattr(cls, cls.FUNCTION))
    types = cls.INPUT_TYPES()
    assert types["required"]["image"][0] == "IMAGE"
    scale = types["required"]["scale"]
    assert scale[0] == "INT" and (scale[1]["min"], scale[1]["max"], scale[1]["step"]) == (2, 4, 2)
    assert types["optional"]["daemon_url"][0] == "STRING"
    assert types["hidden"] == {"unique_id": "UNIQUE_ID"}
    assert not hasattr(cls, "IS_CHANGED")


@pytest.mark.parametrize("scale", [2, 4])
def test_an_image_batch_comes_back_scale_times_larger(upscaler, daemon, scale):
    source = picture(batch=2)
    (images,) = upscaler.upscale(image=source, scale=scale, daemon_url=daemon.url)
    assert isinstance(images, torch.Tensor) and images.dtype == torch.float32
    assert images.shape == (2, 48 * scale, 64 * scale, 3)
    # The sandbox's upscale is a Lanczos resize: each picture is still itself.
    shrunk = torch.nn.functional.interpolate(images.permute(0, 3, 1, 2), size=(48, 64),
                                             mode="area").permute(0, 2, 3, 1)
    assert (shrunk - source).abs().mean() < 0.02           # (Lanczos rings at the edge)
    assert [r.body["scale"] for r in daemon.sandbox.requests_for("enhance_create")] == [scale] * 2
    assert len(daemon.uploads()) == 2
    job = httpx.get(f"{daemon.url}/arting/v1/jobs", params={"limit": 1}).json()["data"][0]
    assert job["kind"] == "upscale" and job["source"] == "comfyui"


def test_a_batch_larger_than_max_images_goes_in_several_jobs(upscaler, make_daemon):
    daemon = make_daemon(max_images=2)
    (images,) = upscaler.upscale(image=picture(batch=5, height=16, width=16), scale=2,
                                 daemon_url=daemon.url)
    assert images.shape == (5, 32, 32, 3)
    jobs = httpx.get(f"{daemon.url}/arting/v1/jobs").json()["data"]
    assert sorted(len(j["request"]["images"]) for j in jobs) == [1, 2, 2]


def test_progress_says_upscaling(upscaler, comfy_host, make_daemon):
    daemon = make_daemon(sandbox_options={"generation_time": 1.0})
    upscaler.upscale(image=picture(), scale=2, daemon_url=daemon.url, unique_id="9")
    lines = [text for _, text in comfy_host.texts()]
    assert any(line.startswith("Upscaling ") for line in lines), lines
    assert lines[-1] == "Done: 1 image"
    values = [v for v, _total, _node in comfy_host.progress]
    assert values == sorted(values) and values[-1] == 100


def test_cancel_in_comfyui_cancels_the_upscale(upscaler, comfy_host, make_daemon):
    daemon = make_daemon(sandbox_options={"generation_time": 6})

    def press_cancel():
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            jobs = httpx.get(f"{daemon.url}/arting/v1/jobs").json()["data"]
            if jobs and jobs[0]["state"] == "running":
                break
            time.sleep(0.02)
        comfy_host.interrupt()

    threading.Thread(target=press_cancel, daemon=True).start()
    with pytest.raises(comfy_host.mm.InterruptProcessingException):
        upscaler.upscale(image=picture(), scale=2, daemon_url=daemon.url)
    job = httpx.get(f"{daemon.url}/arting/v1/jobs").json()["data"][0]
    assert job["state"] == "cancelled"


def test_a_failed_upscale_says_why(upscaler, daemon):
    daemon.do(daemon.sandbox.add_fault, "fail", route="enhance_get")
    with pytest.raises(Exception, match=r"upscale failed") as err:
        upscaler.upscale(image=picture(), scale=2, daemon_url=daemon.url)
    assert "\n" not in str(err.value)


def test_only_2_or_4(upscaler, daemon):
    with pytest.raises(ValueError, match="2× or 4×"):
        upscaler.upscale(image=picture(), scale=3, daemon_url=daemon.url)
    assert daemon.sandbox.requests == []


def test_midjourneys_pictures_are_upscaled_with_its_u_buttons(pack, upscaler, make_daemon):
    """Generate on Midjourney, upscale the IMAGE batch: the node sends only pixels, and
    the daemon finds the grid's quadrants by them, so the U buttons make the upscale."""
    with emulators(MidjourneyEmulator, generation_time=0.2, upscale_time=0.1,
                   quadrant_pixels=64 * 64) as start:
        proxy = start()
        daemon = make_daemon(providers=[{"name": "mj", "kind": "midjourney",
                                         "base_url": proxy.url + "/mj"}])
        generate = pack.NODE_CLASS_MAPPINGS["ArtingGenerate"]()
        images, _info = generate.generate(
            prompt="a lighthouse", negative_prompt="", model="midjourney", width=512,
            height=512, seed=3, steps=25, guidance=7.0, sampler="DPM++ 2M Karras",
            clip_skip=2, batch_size=2, loras="", nsfw=False, daemon_url=daemon.url)
        assert images.shape == (2, 64, 64, 3)
        (upscaled,) = upscaler.upscale(image=images, scale=2, daemon_url=daemon.url)
        assert upscaled.shape == (2, 128, 128, 3)
        job = httpx.get(f"{daemon.url}/arting/v1/jobs", params={"limit": 1}).json()["data"][0]
        assert (job["kind"], job["provider"], job["source"]) == ("upscale", "mj", "comfyui")
        assert sorted(r.body["index"] for r in proxy.sandbox.requests_for("change")) == [1, 2]
        assert daemon.sandbox.requests_for("enhance_create") == []      # not Arting's
