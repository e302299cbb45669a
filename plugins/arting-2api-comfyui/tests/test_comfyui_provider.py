"""The ComfyUI provider against the ComfyUI API emulator, over real sockets: it keeps the
contract (the conformance kit), fills the workflow, reports progress, reads the
catalogue, and maps ComfyUI's refusals."""

from __future__ import annotations

import json

import pytest

from arting_2api_comfyui import workflow
from arting_daemon.errors import UpstreamInvalid
from arting_daemon.testing import Harness


async def test_the_provider_keeps_the_contract(upstream, provider_conformance):
    await provider_conformance(upstream)


async def test_a_job_sends_the_request_in_the_workflow_and_gets_its_images(upstream, comfyui,
                                                                          tmp_path):
    run = Harness(upstream, tmp_path)
    seen: list[float] = []
    async with run.provider() as provider:
        assert await provider.catalogue() == {
            "sd_xl_base_1.0": "sd_xl_base_1.0.safetensors",
            "studio_photo_v2": "studio_photo_v2.safetensors"}
        work = run.work(provider)
        work.generation = work.generation.model_copy(update={
            "prompt": "a red fox", "negative_prompt": "blurry", "width": 640, "height": 384,
            "steps": 6, "n": 2, "model": "Studio_Photo_v2", "seed": 77})
        async with provider.attempt(work, 0) as attempt:
            await attempt.submit()
            outputs = await attempt.follow(seen.append)
        images = [await provider.fetch(work, o) for o in outputs]
    graph = comfyui.prompts[work.provider_state["prompt_id"]].graph
    nodes = {n["class_type"] + str(i): n["inputs"] for i, n in enumerate(graph.values())}
    assert graph["6"]["inputs"]["text"] == "a red fox"
    assert graph["7"]["inputs"]["text"] == "blurry"
    assert graph["3"]["inputs"]["seed"] == 77 and graph["3"]["inputs"]["steps"] == 6
    assert graph["4"]["inputs"]["ckpt_name"] == "studio_photo_v2.safetensors"
    assert (graph["5"]["inputs"]["width"], graph["5"]["inputs"]["height"],
            graph["5"]["inputs"]["batch_size"]) == (640, 384, 2)
    assert nodes and len(images) == 2 and all(i.startswith(b"\x89PNG") for i in images)
    assert seen and seen == sorted(seen) and seen[-1] == 1.0


async def test_an_operators_workflow_is_filled_where_its_placeholders_are(tmp_path):
    own = {"1": {"class_type": "MyLoader", "inputs": {"name": "$model", "keep": "$other"}},
           "2": {"class_type": "SaveImage", "inputs": {"prompt": "$prompt", "seed": "$seed"}}}
    path = tmp_path / "flow.json"
    path.write_text(json.dumps(own))
    graph = workflow.filled(workflow.load(path), {"model": "m", "prompt": "p", "seed": 3})
    assert graph["1"]["inputs"] == {"name": "m", "keep": "$other"}
    assert graph["2"]["inputs"] == {"prompt": "p", "seed": 3}
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="API format"):
        workflow.load(path)


async def test_a_checkpoint_comfyui_lacks_is_refused_in_its_words(upstream, tmp_path):
    run = Harness(upstream, tmp_path)
    async with run.provider() as provider:
        work = run.work(provider)
        work.generation = work.generation.model_copy(update={"model": "nope.safetensors"})
        async with provider.attempt(work, 0) as attempt:
            with pytest.raises(UpstreamInvalid, match="failed validation"):
                await attempt.submit()
    assert upstream.submissions() == 0
