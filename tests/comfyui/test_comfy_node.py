"""The "Arting Generate" node, loaded as ComfyUI loads it and run against a live
daemon + Arting emulator over loopback sockets (only ComfyUI itself is stubbed)."""

from __future__ import annotations

import io
import json
import socket
import sys
import threading
import time

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from comfy_harness import PACK, comfy_module_name


def inputs(node, **overrides):
    """The node's widget defaults (as a fresh node in the UI has them), overridden."""
    values = {}
    for name, spec in node.INPUT_TYPES()["required"].items():
        kind, options = spec[0], spec[1] if len(spec) > 1 else {}
        values[name] = options.get("default", kind[0] if isinstance(kind, list) else None)
    values.update({"prompt": "a lighthouse at dawn", **overrides})
    return values


def wait_running(daemon, job_id, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(f"{daemon.url}/arting/v1/jobs/{job_id}").json()["state"] == "running":
            return
        time.sleep(0.02)
    raise AssertionError("the job never ran")


def last_job(daemon) -> dict:
    return httpx.get(f"{daemon.url}/arting/v1/jobs", params={"limit": 1}).json()["data"][0]


def png_tensor(data: bytes) -> torch.Tensor:
    """A PNG as an [H, W, 3] float tensor, decoded independently of the pack."""
    rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32)
    return torch.from_numpy(rgb / 255)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the node as ComfyUI sees it ----------------------------------------------------------

def test_the_pack_registers_like_a_comfyui_node_pack(pack):
    name = comfy_module_name(PACK)
    assert pack.__name__ == name
    assert pack.NODE_DISPLAY_NAME_MAPPINGS == {"ArtingGenerate": "Arting Generate",
                                               "ArtingUpscale": "Arting Upscale"}
    cls = pack.NODE_CLASS_MAPPINGS["ArtingGenerate"]
    assert cls.__module__ == f"{name}.arting_comfy.nodes"  # relative imports only
    assert cls.CATEGORY == "Arting"
    assert cls.RETURN_TYPES == ("IMAGE", "STRING")
    assert callable(getattr(cls, cls.FUNCTION))
    # Equal inputs must hit ComfyUI's cache: nothing may force a re-run.
    assert not hasattr(cls, "IS_CHANGED") and not hasattr(cls, "fingerprint_inputs")
    assert not getattr(cls, "OUTPUT_NODE", False)


def test_input_types_are_well_formed(pack):
    types = pack.NODE_CLASS_MAPPINGS["ArtingGenerate"].INPUT_TYPES()
    assert set(types) == {"required", "optional", "hidden"}
    assert types["hidden"] == {"unique_id": "UNIQUE_ID"}
    assert types["optional"]["image"][0] == "IMAGE"
    assert types["optional"]["mask"][0] == "MASK"
    assert types["optional"]["daemon_url"][0] == "STRING"
    required = types["required"]
    assert required["prompt"][1]["multiline"] and required["loras"][1]["multiline"]
    assert required["seed"][1]["control_after_generate"] is True
    assert required["nsfw"][0] == "BOOLEAN"
    for name, (kind, *rest) in {**required, **types["optional"]}.items():
        options = rest[0] if rest else {}
        if isinstance(kind, list):
            assert options["default"] in kind, name
        elif kind in ("INT", "FLOAT"):
            assert options["min"] <= options["default"] <= options["max"], name


def test_input_types_does_no_network_io(pack, monkeypatch, daemon):
    monkeypatch.setenv("ARTING_DAEMON_URL", daemon.url)
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("INPUT_TYPES must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    types = pack.NODE_CLASS_MAPPINGS["ArtingGenerate"].INPUT_TYPES()
    assert "oneFORALLAnime" in types["required"]["model"][0]
    assert attempts == [] and daemon.sandbox.requests == []


# --- generating -----------------------------------------------------------------------------

def test_text_to_image_returns_an_image_batch_and_the_generation_info(node, daemon):
    images, info = node.generate(**inputs(
        node, width=512, height=768, batch_size=2, seed=1234, steps=20, guidance=5.5,
        model="asyncsMIX_v7", sampler="DPM++ 2M Karras", negative_prompt="fog",
        loras="add_detail:0.6\n<lora:COMMIX:1.2>", nsfw=True, daemon_url=daemon.url))
    assert isinstance(images, torch.Tensor)
    assert images.shape == (2, 768, 512, 3) and images.dtype == torch.float32
    assert images.device.type == "cpu"
    assert 0.0 <= images.min().item() and images.max().item() <= 1.0
    assert images.std().item() > 0.01  # a picture, not a flat fill
    info = json.loads(info)
    assert info["seeds"] == [1234, 1235] and info["model"] == "asyncsMIX_v7"
    assert info["loras"] == [{"id": "add_detail", "weight": 0.6},
                             {"id": "COMMIX", "weight": 1.2}]
    job = httpx.get(f"{daemon.url}/arting/v1/jobs/{info['job_id']}").json()
    assert job["state"] == "succeeded" and job["source"] == "comfyui"
    sent = daemon.sandbox.requests_for("create")[-1].body
    assert (sent["model_id"], sent["seed"], sent["steps"], sent["guidance"]) == \
        ("asyncsMIX_v7", 1234, 20, 5.5)
    assert (sent["sampler"], sent["negative_prompt"], sent["is_nsfw"]) == \
        ("DPM++ 2M Karras", "fog", True)
    assert (sent["lora_ids"], sent["lora_weight"]) == ("add_detail,COMMIX", "0.6,1.2")


def test_the_same_image_as_the_daemon_stored(node, daemon):
    images, info = node.generate(**inputs(node, width=256, height=256, daemon_url=daemon.url))
    stored = httpx.get(json.loads(info)["images"][0]["url"]).content
    assert torch.equal(images[0], png_tensor(stored))


def test_progress_is_monotonic_with_status_text(node, comfy_host, make_daemon):
    daemon = make_daemon(max_active_jobs=1, expected_duration=1.0,
                         sandbox_options={"generation_time": 1.0})
    blocker = httpx.post(f"{daemon.url}/arting/v1/jobs", json={"prompt": "first"}).json()
    wait_running(daemon, blocker["id"])
    node.generate(**inputs(node, daemon_url=daemon.url), unique_id="7")

    values = [v for v, _total, _node in comfy_host.progress]
    assert len(set(values)) >= 3, values
    assert values == sorted(values) and values[0] == 0 and values[-1] == 100
    assert {(total, node_id) for _v, total, node_id in comfy_host.progress} == {(100, "7")}
    texts = comfy_host.texts()
    assert {node_id for node_id, _ in texts} == {"7"}
    lines = [text for _, text in texts]
    assert lines[0].startswith("Queued")
    assert any(line.startswith("Queued (#1 in line), about ") for line in lines)
    assert any(line.startswith("Generating ") for line in lines)
    assert lines[-1] == "Done: 1 image"


def test_progress_comes_over_the_websocket(node, comfy_host, make_daemon, monkeypatch):
    """With polling made impossible, the bar still moves: the updates came over the
    daemon's WebSocket."""
    client_module = sys.modules[f"{comfy_module_name(PACK)}.arting_comfy.daemon_client"]

    def polled(self, job_id):
        raise AssertionError("the node polled the job")

    monkeypatch.setattr(client_module.DaemonClient, "job", polled)
    daemon = make_daemon(sandbox_options={"generation_time": 2.0})
    images, _ = node.generate(**inputs(node, daemon_url=daemon.url), unique_id="9")
    assert images.shape[0] == 1
    values = [v for v, _total, _node in comfy_host.progress]
    assert len(set(values)) >= 4 and values == sorted(values) and values[-1] == 100, values
    lines = [text for _, text in comfy_host.texts()]
    assert any(line.startswith("Generating ") for line in lines)
    assert lines[-1] == "Done: 1 image"


def test_cancel_in_comfyui_cancels_the_daemon_job_within_a_second(node, comfy_host,
                                                                   make_daemon, monkeypatch):
    """After Cancel the node polls the daemon at most once more (a poll may be on its
    way already) before it cancels the job: polls are half a second apart, so the job
    is cancelled within a second, while Arting still works on it."""
    daemon = make_daemon(sandbox_options={"generation_time": 6})
    nodes = sys.modules[type(node).__module__]
    assert nodes.POLL_INTERVAL == 0.5
    client_class = nodes.DaemonClient
    calls: list[str] = []
    for name in ("job", "cancel"):
        real = getattr(client_class, name)
        monkeypatch.setattr(client_class, name, lambda self, job_id, real=real, name=name:
                            (calls.append(name), real(self, job_id))[1])

    def press_cancel():
        wait_running(daemon, last_job(daemon)["id"])
        calls.append("pressed")
        comfy_host.interrupt()

    threading.Thread(target=press_cancel, daemon=True).start()
    with pytest.raises(comfy_host.mm.InterruptProcessingException):
        node.generate(**inputs(node, daemon_url=daemon.url))
    after = calls[calls.index("pressed"):]
    assert after.count("job") <= 1 and after[-1] == "cancel", calls
    job = last_job(daemon)
    assert job["state"] == "cancelled" and job["error"]["code"] == "cancelled"
    assert not comfy_host.mm.processing_interrupted()  # cleared, as ComfyUI's check does


def test_an_interrupt_raised_by_the_progress_bar_cancels_the_daemon_job(
        node, comfy_host, make_daemon, monkeypatch):
    """In ComfyUI the progress hook itself raises when the user cancelled."""
    daemon = make_daemon(sandbox_options={"generation_time": 6})

    def cancel_while_running(value, total, preview, node_id=None):
        if value > 0:
            comfy_host.interrupt()
        comfy_host.hook(value, total, preview, node_id=node_id)

    comfy_host.utils.set_progress_bar_global_hook(cancel_while_running)
    with pytest.raises(comfy_host.mm.InterruptProcessingException):
        node.generate(**inputs(node, daemon_url=daemon.url))
    job = last_job(daemon)
    assert job["state"] == "cancelled"
    assert daemon.sandbox.requests_for("create")  # it had reached Arting


def test_image_to_image_sends_the_image_and_strength(node, daemon):
    picture = torch.zeros(1, 320, 288, 3)
    picture[0, :, :144, 0] = 1.0                            # left half red
    picture[0, :, 144:, 2] = torch.linspace(0, 1, 320)[:, None]  # right half a blue ramp
    images, info = node.generate(**inputs(node, daemon_url=daemon.url),
                                 image=picture, strength=0.35)
    assert images.shape == (1, 320, 288, 3)  # the result takes the image's size
    assert json.loads(info)["strength"] == 0.35
    create = daemon.sandbox.requests_for("i2i_create")[-1].body
    assert create["strength"] == 0.35
    sent = png_tensor(daemon.uploads()[-1])
    assert torch.allclose(sent, picture[0], atol=0.5 / 255)


def test_a_mask_keeps_the_picture_where_it_is_zero(node, daemon):
    picture = torch.full((1, 256, 256, 3), 0.5)
    mask = torch.zeros(256, 256)
    mask[:, :128] = 1.0  # only the left half may change
    images, _ = node.generate(**inputs(node, daemon_url=daemon.url), image=picture, mask=mask)
    assert torch.allclose(images[0, :, 128:], picture[0, :, 128:], atol=1 / 255)
    assert not torch.allclose(images[0, :, :128], picture[0, :, :128], atol=1 / 255)


# --- errors, one sentence each ----------------------------------------------------------------

def test_daemon_down_is_one_sentence_naming_the_url(node):
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(Exception) as err:
        node.generate(**inputs(node, daemon_url=url))
    assert str(err.value) == (f"Arting daemon not reachable at {url} — start it with "
                              "`arting-daemon` (or set ARTING_DAEMON_URL to where it runs).")


def test_daemon_url_comes_from_the_input_then_the_environment(node, make_daemon, monkeypatch):
    from_env, from_input = make_daemon(), make_daemon()
    monkeypatch.setenv("ARTING_DAEMON_URL", from_env.url)
    node.generate(**inputs(node))
    assert len(from_env.sandbox.requests_for("create")) == 1
    node.generate(**inputs(node, daemon_url=from_input.url))
    assert len(from_input.sandbox.requests_for("create")) == 1
    assert len(from_env.sandbox.requests_for("create")) == 1


def test_a_failed_job_says_why(node, daemon):
    daemon.do(daemon.sandbox.add_fault, "fail", route="get")
    with pytest.raises(Exception, match=r"^Arting could not make the image: .+") as err:
        node.generate(**inputs(node, daemon_url=daemon.url))
    assert "\n" not in str(err.value)


def test_a_refused_request_says_what_to_fix(node, daemon):
    with pytest.raises(Exception) as err:
        node.generate(**inputs(node, prompt="  ", daemon_url=daemon.url))
    assert str(err.value) == ("The Arting daemon refused the request: prompt is required and "
                              "must be a non-empty string.")


@pytest.mark.parametrize("loras", ["add_detail:lots", "add_detail:3", ":0.5"])
def test_a_bad_lora_line_is_explained_before_anything_is_sent(node, daemon, loras):
    with pytest.raises(ValueError, match="write one per line as id:weight"):
        node.generate(**inputs(node, loras=loras, daemon_url=daemon.url))
    assert daemon.sandbox.requests == []


def test_a_mask_needs_an_image(node, daemon):
    with pytest.raises(ValueError, match="^The mask needs an image as well"):
        node.generate(**inputs(node, daemon_url=daemon.url), mask=torch.ones(1, 64, 64))


# --- the daemon's other providers -------------------------------------------------------------

def test_other_providers_models_are_listed_with_their_provider_and_remembered(
        pack, node, make_daemon, monkeypatch, tmp_path):
    import sys
    import types

    from a1111_standin import A1111StandIn, title
    from comfy_harness import load_like_comfyui, unload

    from arting_daemon import catalog

    user = types.ModuleType("folder_paths")
    user.get_user_directory = lambda: str(tmp_path / "user")
    monkeypatch.setitem(sys.modules, "folder_paths", user)
    studio = A1111StandIn().start()
    try:
        daemon = make_daemon(providers=[
            {"name": "studio", "kind": "a1111", "base_url": studio.url},
            {"name": "relay", "kind": "openai", "base_url": "http://127.0.0.1:9/v1",
             "models": ["relay-model"]}])
        studio.wait_until(lambda _: "studio/dreamshaper_8" in [
            m["id"] for m in httpx.get(daemon.url + "/arting/v1/catalog").json()["models"]])
        assert node.INPUT_TYPES()["required"]["model"][0] == list(catalog.MODELS)

        node.generate(**inputs(node, width=256, height=256, daemon_url=daemon.url))
        listed = node.INPUT_TYPES()["required"]["model"][0]
        assert listed == [*catalog.MODELS, "studio/dreamshaper_8", "studio/realisticVisionV51",
                          "relay/relay-model"]

        images, info = node.generate(**inputs(node, model="studio/realisticVisionV51",
                                              width=256, height=320, daemon_url=daemon.url))
        assert images.shape == (1, 320, 256, 3)
        assert studio.requests[-1][1]["override_settings"]["sd_model_checkpoint"] == \
            title("realisticVisionV51")
        assert json.loads(info)["model"] == "studio/realisticVisionV51"
        # A name the list does not hold yet still passes ComfyUI's validation.
        assert type(node).VALIDATE_INPUTS(model="studio/added_later") is True
        assert type(node).VALIDATE_INPUTS(model=" ") == "Choose a model."
    finally:
        studio.stop()
    # After a restart of ComfyUI the list is the same before any job ran.
    unload(comfy_module_name(PACK))
    again = load_like_comfyui(PACK).NODE_CLASS_MAPPINGS["ArtingGenerate"]
    assert again.INPUT_TYPES()["required"]["model"][0] == listed
