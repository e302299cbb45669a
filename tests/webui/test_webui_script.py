"""The "Arting (remote)" script inside an emulated A1111 and an emulated Forge, loaded as
SD-WebUI loads it and run against a live daemon + Arting sandbox over loopback."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
import warnings

import httpx
import pytest
from PIL import Image
from webui_harness import CONTROL_NAMES, EXTENSION, load, parse_infotext, paste

from arting_daemon import catalog


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def jobs(daemon) -> list[dict]:
    return httpx.get(daemon.url + "/arting/v1/jobs", params={"limit": 50}).json()["data"]


def when(condition, then, timeout: float = 10.0) -> threading.Thread:
    """Run ``then`` from another thread once ``condition`` holds — as a person
    pressing Interrupt or Skip in the browser while the script waits."""
    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                then()
                return
            time.sleep(0.02)
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def running(daemon, count: int = 1):
    return lambda: sum(j["state"] == "running" for j in jobs(daemon)) >= count


# --- loading, UI, settings -----------------------------------------------------------------

def test_loads_as_sd_webui_loads_it(host):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # gradio 3 warns about arguments it does not know
        classes = host.load_scripts(EXTENSION)
        assert [c.__name__ for c in classes] == ["ArtingRemote"]
        script, controls = host.create_ui(classes[0], is_img2img=False)
        script_i2i, _ = host.create_ui(classes[0], is_img2img=True)
    assert script.title() == "Arting (remote)"
    assert script.show(False) is True and script_i2i.show(True) is True
    assert [a["label"] for a in script.api_args] == [
        "Arting model", "Allow NSFW", "LoRA 1", "LoRA 1 weight", "LoRA 2", "LoRA 2 weight",
        "LoRA 3", "LoRA 3 weight", "Upscale with Arting"]
    assert len(CONTROL_NAMES) == len(controls)
    model = controls[0]
    assert model.value == "(daemon default)"
    assert model.choices[1:] == list(catalog.MODELS)
    assert controls[2].choices[1:] == list(catalog.LORAS)
    ids = [c.elem_id for c in host.gradio.created if c.elem_id]
    assert len(ids) == len(set(ids)) and all(i.startswith("script_txt2img_arting_remote_")
                                             for i in ids[:len(ids) // 2])
    assert script.infotext_fields and all(c in controls for c, _ in script.infotext_fields)


def test_ui_uses_nothing_gradio_4_lacks(host):
    """Forge's gradio 4 refuses unknown arguments and has no gr.Box; the same UI must
    build in both profiles (this test runs in each)."""
    classes = host.load_scripts(EXTENSION)
    host.create_ui(classes[0], is_img2img=True)
    kinds = {type(c).__name__ for c in host.gradio.created}
    assert kinds <= {"Row", "Dropdown", "Checkbox", "Slider", "Markdown", "Button"}


def test_settings_section_arting(arting):
    opts = arting.host.opts
    assert len(arting.host.callbacks["ui_settings"]) == 1
    url, timeout = opts.data_labels["arting_daemon_url"], opts.data_labels["arting_timeout"]
    assert url.section == timeout.section == ("arting", "Arting")
    assert url.default == "http://127.0.0.1:8090" and "ARTING_DAEMON_URL" in url.comment_after
    assert url.component is arting.host.gradio.Textbox
    assert timeout.component is arting.host.gradio.Slider
    limits = timeout.component_args
    assert limits["minimum"] <= timeout.default <= limits["maximum"]
    assert opts.arting_daemon_url == "http://127.0.0.1:8090"


def test_status_line_says_whether_the_daemon_answers(host, daemon, monkeypatch):
    down = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("ARTING_DAEMON_URL", down)
    arting = load(host, EXTENSION, monkeypatch)
    status = next(c for c in host.gradio.created if type(c).__name__ == "Markdown")
    button = next(c for c in host.gradio.created if type(c).__name__ == "Button")
    assert "not reachable" in status.value and down in status.value
    assert "(ARTING_DAEMON_URL)" in status.value
    monkeypatch.delenv("ARTING_DAEMON_URL")
    arting.point_at(daemon.url)
    line = status.load_fn()  # what the next page load shows
    assert "reachable** at" in line and "not" not in line and daemon.url in line
    assert "image-to-image on" in line and "upscale on" in line
    click = button.listeners[0]
    assert click["fn"] is status.load_fn and click["outputs"] == [status]


def test_url_precedence_flag_then_env_then_setting(arting, monkeypatch):
    from arting_webui import settings
    arting.point_at("http://setting:1")
    assert settings.daemon_config().url == "http://setting:1"
    monkeypatch.setenv("ARTING_DAEMON_URL", "http://env:2")
    config = settings.daemon_config()
    assert (config.url, config.source) == ("http://env:2", "ARTING_DAEMON_URL")
    arting.host.shared.cmd_opts.arting_daemon_url = "http://flag:3"
    config = settings.daemon_config()
    assert (config.url, config.source) == ("http://flag:3", "--arting-daemon-url")
    arting.host.shared.cmd_opts.arting_daemon_url = " 127.0.0.1:9/ "  # as people type it
    assert settings.daemon_config().url == "http://127.0.0.1:9"


def test_preload_adds_the_flag():
    import argparse
    import importlib.util

    spec = importlib.util.spec_from_file_location("preload.py", EXTENSION / "preload.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    parser = argparse.ArgumentParser()
    module.preload(parser)
    args = parser.parse_args(["--arting-daemon-url", "http://x:1"])
    assert args.arting_daemon_url == "http://x:1"


def test_static_choices_match_the_daemon_catalogue(arting):
    from arting_webui import choices
    assert list(choices.MODELS) == list(catalog.MODELS)
    assert list(choices.LORAS) == list(catalog.LORAS)
    assert choices.SAMPLERS == catalog.SAMPLERS


# --- txt2img ------------------------------------------------------------------------------

def test_batches_give_every_image_with_its_seed_and_infotext(arting, daemon):
    arting.point_at(daemon.url)
    p, processed = arting.txt2img(
        prompt="a lighthouse", negative_prompt="low quality", styles=["sharp"], seed=1234,
        n_iter=2, batch_size=2, steps=20, cfg_scale=6.5, width=512, height=768,
        sampler_name="DPM++ 2M", scheduler="Karras")
    assert len(processed.images) == 4
    assert all(isinstance(i, Image.Image) and i.size == (512, 768) for i in processed.images)
    assert processed.all_seeds == [1234, 1235, 1236, 1237] and processed.seed == 1234
    assert len(processed.infotexts) == 4 and processed.info == processed.infotexts[0]
    for i, (image, text) in enumerate(zip(processed.images, processed.infotexts)):
        fields = parse_infotext(text)
        assert fields["Prompt"] == "a lighthouse, sharp focus"
        assert fields["Negative prompt"] == "low quality, blurry"
        assert (fields["Steps"], fields["Sampler"], fields["CFG scale"]) == (
            "20", "DPM++ 2M Karras", "6.5")
        assert fields["Seed"] == str(1234 + i)
        assert (fields["Size-1"], fields["Size-2"]) == ("512", "768")
        assert fields["Model"] == "oneFORALLAnime"
        assert image.info["parameters"] == text
    creates = daemon.sandbox.requests_for("create")
    assert [(c.body["seed"], c.body["samples"]) for c in creates] == [(1234, 2), (1236, 2)]
    assert creates[0].body["prompt"] == "a lighthouse, sharp focus"
    assert {j["source"] for j in jobs(daemon)} == {"sd-webui"}
    assert processed.js()  # the API answer serialises


def test_the_upscale_option_upscales_each_batch_with_arting(arting, daemon):
    arting.point_at(daemon.url)
    _, processed = arting.txt2img({"upscale": "2x"}, prompt="a lighthouse", seed=21, n_iter=2,
                                  batch_size=2, steps=5, width=256, height=384)
    assert [i.size for i in processed.images] == [(512, 768)] * 4
    assert processed.all_seeds == [21, 22, 23, 24]
    fields = parse_infotext(processed.infotexts[1])
    assert (fields["Seed"], fields["Size-1"], fields["Size-2"]) == ("22", "256", "384")
    assert fields["Arting upscale"] == "2"
    assert processed.images[1].info["parameters"] == processed.infotexts[1]
    upscales = [j for j in jobs(daemon) if j["kind"] == "upscale"]
    assert len(upscales) == 2 and {j["source"] for j in upscales} == {"sd-webui"}
    assert [r.body["scale"] for r in daemon.sandbox.requests_for("enhance_create")] == [2] * 4
    pasted = paste(arting.txt2img_script.infotext_fields, fields)
    assert pasted[id(arting.txt2img_controls[CONTROL_NAMES.index("upscale")])] == "2x"


def test_eight_script_args_still_work_and_mean_no_upscale(arting, daemon):
    arting.point_at(daemon.url)
    p = arting.host.txt2img(prompt="p", seed=3, steps=5, width=256, height=256)
    processed = arting.host.generate(arting.txt2img_script, p, *arting.args()[:8])
    assert processed.images[0].size == (256, 256)
    assert not daemon.sandbox.requests_for("enhance_create")


def test_a_failed_upscale_is_reported(arting, daemon):
    daemon.do(daemon.sandbox.add_fault, "fail", route="enhance_get")
    arting.point_at(daemon.url)
    with pytest.raises(Exception, match="upscale failed") as caught:
        arting.txt2img({"upscale": "4x"}, prompt="p", seed=1, steps=5)
    assert "\n" not in str(caught.value)
    assert arting.host.state.textinfo is None


def test_random_seed_is_fixed_once_and_counted_up(arting, daemon):
    arting.point_at(daemon.url)
    _, processed = arting.txt2img(prompt="p", seed=-1, n_iter=3, batch_size=1, steps=5)
    first = processed.all_seeds[0]
    assert first >= 0 and processed.all_seeds == [first, first + 1, first + 2]


def test_a_batch_larger_than_the_daemon_allows_is_split(arting, make_daemon):
    daemon = make_daemon(max_images=2)
    arting.point_at(daemon.url)
    _, processed = arting.txt2img(prompt="p", seed=10, n_iter=1, batch_size=5, steps=5)
    assert processed.all_seeds == [10, 11, 12, 13, 14]
    assert [c.body["samples"] for c in daemon.sandbox.requests_for("create")] == [2, 2, 1]


def test_own_controls_reach_arting_and_paste_back(arting, daemon):
    arting.point_at(daemon.url)
    chosen = dict(model="asyncsMIX_v7", nsfw=True, lora1="add_detail", weight1=0.6,
                  lora2="Selene", weight2=1.25)
    _, processed = arting.txt2img(chosen, prompt="a fox", seed=5, steps=8)
    body = daemon.sandbox.requests_for("create")[0].body
    assert body["model_id"] == "asyncsMIX_v7" and body["is_nsfw"] is True
    assert (body["lora_ids"], body["lora_weight"]) == ("add_detail,Selene", "0.6,1.25")
    fields = parse_infotext(processed.infotexts[0])
    assert fields["Model"] == "asyncsMIX_v7" and fields["Arting NSFW"] == "True"
    pasted = paste(arting.txt2img_script.infotext_fields, fields)
    expected = arting.args(**chosen)
    for name, control, value in zip(CONTROL_NAMES, arting.txt2img_controls, expected):
        assert pasted[id(control)] == value, name
    others = parse_infotext("a cat\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, "
                            "Size: 512x512, Model: v1-5-pruned")
    assert paste(arting.txt2img_script.infotext_fields, others) == {}


def test_state_moves_while_it_waits(arting, make_daemon):
    daemon = make_daemon(sandbox_options={"generation_time": 0.6}, expected_duration=0.6)
    arting.point_at(daemon.url)
    state = arting.host.state
    arting.txt2img(prompt="p", seed=1, n_iter=2, batch_size=1, steps=20)
    assert state.seen("job_count") == [-1, 2]
    assert state.seen("job_no")[-2:] == [1, 2] and state.job_no == 2
    assert state.seen("job")[-2:] == ["Batch 1 out of 2", "Batch 2 out of 2"]
    assert state.seen("sampling_steps") == [20]
    assert 0 < max(state.seen("sampling_step")) <= 20
    texts = [t for t in state.seen("textinfo") if t]
    assert any(t.startswith("Arting: Generating") for t in texts)
    assert state.textinfo is None and state.sampling_step == 0
    assert state.current_image is not None  # the live preview showed each result


@pytest.mark.parametrize(("samples_save", "do_not_save", "saved"),
                         [(True, False, 2), (False, False, 0), (True, True, 0)])
@pytest.mark.parametrize("host_has_save_samples", [True, False])
def test_saves_only_when_the_settings_say_so(arting, daemon, monkeypatch, samples_save,
                                             do_not_save, saved, host_has_save_samples):
    if not host_has_save_samples:  # before A1111 1.6 the script decides itself
        monkeypatch.delattr(arting.host.processing.StableDiffusionProcessing, "save_samples")
    arting.point_at(daemon.url)
    arting.host.opts.samples_save = samples_save
    _, processed = arting.txt2img(prompt="p", seed=7, n_iter=2, steps=5,
                                  do_not_save_samples=do_not_save)
    assert len(processed.images) == 2 and len(arting.host.saved) == saved
    for record, text in zip(arting.host.saved, processed.infotexts):
        assert record.path.parent == arting.host.outdir and record.extension == "png"
        assert record.info == text
        with Image.open(record.path) as png:  # what PNG Info reads
            assert parse_infotext(png.text["parameters"])["Seed"] == str(record.seed)


def test_runs_where_the_settings_were_never_registered(host, monkeypatch, daemon):
    """API-only starts never build the settings page: no option exists, the script
    falls back to ARTING_DAEMON_URL and its defaults."""
    classes = host.load_scripts(EXTENSION)
    script, controls = host.create_ui(classes[0], is_img2img=False)
    monkeypatch.setenv("ARTING_DAEMON_URL", daemon.url)
    processed = host.generate(script, host.txt2img(prompt="p", seed=3, steps=5),
                              *[c.value for c in controls])
    assert processed.all_seeds == [3]


# --- interrupt, skip, errors ----------------------------------------------------------------

def test_interrupt_cancels_the_daemon_job_and_stops(arting, make_daemon):
    daemon = make_daemon(sandbox_options={"generation_time": 30})
    arting.point_at(daemon.url)
    when(running(daemon), arting.host.state.interrupt)
    started = time.monotonic()
    _, processed = arting.txt2img(prompt="p", seed=1, n_iter=2, steps=5)
    assert time.monotonic() - started < 10          # not after Arting's 30 s
    assert processed.images == [] and json.loads(processed.js())["infotexts"] == []
    assert [j["state"] for j in jobs(daemon)] == ["cancelled"]
    assert len(daemon.sandbox.requests_for("create")) == 1  # batch 2 never started
    assert arting.host.state.textinfo is None


def test_skip_cancels_this_batch_and_goes_on(arting, make_daemon):
    daemon = make_daemon(sandbox_options={"generation_time": 1.5})
    arting.point_at(daemon.url)
    when(running(daemon), arting.host.state.skip)
    _, processed = arting.txt2img(prompt="p", seed=40, n_iter=2, steps=5)
    assert processed.all_seeds == [41] and len(processed.images) == 1
    assert sorted(j["state"] for j in jobs(daemon)) == ["cancelled", "succeeded"]
    assert arting.host.state.job_no == 2


def test_stop_generating_finishes_the_batch_then_stops(arting, make_daemon):
    if not hasattr(arting.host.state, "stop_generating"):
        pytest.skip("this host has no Stop generating (A1111 < 1.9)")
    daemon = make_daemon(sandbox_options={"generation_time": 1.0})
    arting.point_at(daemon.url)
    when(running(daemon), arting.host.state.stop_generating)
    _, processed = arting.txt2img(prompt="p", seed=1, n_iter=3, steps=5)
    assert processed.all_seeds == [1]
    assert [j["state"] for j in jobs(daemon)] == ["succeeded"]


def test_daemon_down_is_one_readable_sentence(arting):
    url = f"http://127.0.0.1:{free_port()}"
    arting.point_at(url)
    state = arting.host.state
    with pytest.raises(Exception) as caught:
        arting.txt2img(prompt="p", seed=1, n_iter=2)
    message = str(caught.value)
    assert f"not reachable at {url}" in message and "arting-daemon" in message
    assert "\n" not in message and "Traceback" not in message
    assert (state.job_count, state.job_no, state.textinfo, state.sampling_step) == (-1, 0,
                                                                                    None, 0)


def test_a_failed_job_is_reported_and_the_state_left_clean(arting, daemon):
    daemon.do(daemon.sandbox.add_fault, "reject", route="create", message="content refused")
    arting.point_at(daemon.url)
    with pytest.raises(Exception) as caught:
        arting.txt2img(prompt="p", seed=1, n_iter=2, steps=5)
    assert "Arting" in str(caught.value) and "\n" not in str(caught.value)
    state = arting.host.state
    assert state.textinfo is None and state.sampling_step == 0
    assert state.interrupted is False and state.skipped is False


def test_an_empty_prompt_gets_the_daemons_reason(arting, daemon):
    arting.point_at(daemon.url)
    with pytest.raises(Exception, match="prompt is required"):
        arting.txt2img(prompt="", seed=1, steps=5)


# --- img2img -------------------------------------------------------------------------------

def test_img2img_sends_the_init_image_and_strength(arting, daemon):
    arting.point_at(daemon.url)
    init = Image.new("RGBA", (320, 256), (10, 200, 30, 255))
    _, processed = arting.img2img(prompt="as a painting", init_images=[init],
                                  denoising_strength=0.35, seed=9, steps=5, width=320,
                                  height=256, batch_size=2)
    assert len(processed.images) == 2 and processed.all_seeds == [9, 10]
    create = daemon.sandbox.requests_for("i2i_create")
    assert len(create) == 1 and create[0].body["strength"] == 0.35
    received = next(j for j in daemon.sandbox.jobs.values() if j.route == "img2img")
    got = Image.open(io.BytesIO(received.init_image)).convert("RGB")
    assert got.size == (320, 256) and got.getpixel((5, 5)) == (10, 200, 30)
    fields = parse_infotext(processed.infotexts[0])
    assert fields["Denoising strength"] == "0.35" and fields["Prompt"] == "as a painting"


def test_inpaint_mask_white_is_repainted(arting, daemon):
    arting.point_at(daemon.url)
    init = Image.new("RGB", (256, 256), (255, 0, 0))
    mask = Image.new("L", (256, 256), 0)
    mask.paste(255, (0, 0, 128, 256))  # repaint the left half only
    _, processed = arting.img2img(prompt="p", init_images=[init], mask=mask,
                                  mask_blur_x=0, mask_blur_y=0, seed=2, steps=5,
                                  width=256, height=256)
    image = processed.images[0]
    assert image.getpixel((250, 128)) == (255, 0, 0)  # kept
    assert image.getpixel((5, 128)) != (255, 0, 0)  # repainted


def test_inpaint_not_masked_inverts_the_mask(arting, daemon):
    arting.point_at(daemon.url)
    init = Image.new("RGB", (256, 256), (0, 0, 255))
    mask = Image.new("RGBA", (256, 256), (0, 0, 0, 0))
    mask.paste((255, 255, 255, 255), (0, 0, 128, 256))  # drawn on the left half
    _, processed = arting.img2img(prompt="p", init_images=[init], mask=mask,
                                  inpainting_mask_invert=1, mask_blur_x=0, mask_blur_y=0,
                                  seed=2, steps=5, width=256, height=256)
    image = processed.images[0]
    assert image.getpixel((5, 128)) == (0, 0, 255)  # drawn area kept
    assert image.getpixel((250, 128)) != (0, 0, 255)


def test_the_timeout_setting_gives_up_and_cancels(arting, make_daemon):
    daemon = make_daemon(sandbox_options={"generation_time": 30})
    arting.point_at(daemon.url)
    assert arting.host.opts.set("arting_timeout", 1)
    started = time.monotonic()
    with pytest.raises(Exception, match="longer than 1 s"):
        arting.txt2img(prompt="p", seed=1, steps=5)
    assert time.monotonic() - started < 10          # not after Arting's 30 s
    assert [j["state"] for j in jobs(daemon)] == ["cancelled"]


def test_plan_keeps_equal_prompts_together_within_the_daemons_limit(arting):
    from arting_webui.remote import Chunk, plan
    prompts = ["a", "a", "b", "b", "b", "b"]
    assert plan(2, 3, prompts, [""] * 6, max_images=4) == [
        [Chunk(0, 2), Chunk(2, 1)], [Chunk(3, 3)]]
    assert plan(1, 6, ["x"] * 6, [""] * 6, max_images=4) == [[Chunk(0, 4), Chunk(4, 2)]]


# --- the daemon's other providers -------------------------------------------------------------

def test_other_providers_models_come_with_refresh_models(arting, make_daemon):
    from a1111_standin import A1111StandIn, title

    studio = A1111StandIn().start()
    try:
        daemon = make_daemon(providers=[{"name": "studio", "kind": "a1111",
                                         "base_url": studio.url}])
        studio.wait_until(lambda _: "studio/dreamshaper_8" in [
            m["id"] for m in httpx.get(daemon.url + "/arting/v1/catalog").json()["models"]])
        arting.point_at(daemon.url)
        model = arting.txt2img_controls[0]
        assert model.choices[1:] == list(catalog.MODELS)
        refresh = next(c for c in arting.host.gradio.created
                       if type(c).__name__ == "Button" and c.value == "Refresh models")
        [click] = refresh.listeners
        assert click["outputs"] == [model]
        update = click["fn"]()
        assert update["choices"] == ["(daemon default)", *catalog.MODELS,
                                     "studio/dreamshaper_8", "studio/realisticVisionV51"]

        _, processed = arting.txt2img(controls={"model": "studio/dreamshaper_8"}, prompt="p",
                                      seed=7, steps=3)
        assert processed.all_seeds == [7]
        [(route, body)] = studio.requests
        assert body["override_settings"]["sd_model_checkpoint"] == title("dreamshaper_8")
        assert "Model: studio/dreamshaper_8" in processed.infotexts[0]
    finally:
        studio.stop()
