"""The "Arting" upscaler and Hires. fix, inside an emulated A1111 and an emulated Forge:
the upscaler in the WebUI's list (Extras, Hires. fix), upscaling through the daemon's
upscale job with the progress bar and Interrupt; and the Arting script honouring the
tab's Hires. fix — with Arting's upscaler, with the WebUI's own, or in place of a latent
one — saying which in the infotext. Against a live daemon + Arting sandbox."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from processes import emulators
from test_webui_script import jobs, running, when
from webui_harness import EXTENSION, load, parse_infotext

from arting_daemon.sandbox.midjourney import MidjourneyEmulator


@pytest.fixture
def webui(host, monkeypatch, daemon):
    """The extension loaded, pointed at the daemon (as the user set it in Settings)."""
    arting = load(host, EXTENSION, monkeypatch)
    arting.point_at(daemon.url)
    return arting


def picture(size=(64, 48), color=(30, 120, 200)) -> Image.Image:
    return Image.new("RGB", size, color)


# --- the upscaler -------------------------------------------------------------------------

def test_arting_is_in_the_webuis_upscaler_list_for_extras_and_hires_fix(webui):
    host = webui.host
    names = [x.name for x in host.shared.sd_upscalers]
    assert names[:3] == ["None", "Lanczos", "Nearest"] and "Arting" in names
    assert "Arting" in host.hires_choices() and host.hires_choices()[0] == "Latent"
    (data,) = [x for x in host.shared.sd_upscalers if x.name == "Arting"]
    assert data.scale == 4 and data.data_path is None


@pytest.mark.parametrize("factor, size, passes", [(2, (128, 96), 1), (3, (192, 144), 1),
                                                  (1.5, (96, 72), 1)])
def test_extras_upscales_through_the_daemon(webui, daemon, factor, size, passes):
    """One image-enhance job per picture (2× up to a factor of 2, else 4×), the result
    resized by the WebUI to its size (sides down to multiples of 8)."""
    (out,) = webui.host.extras([picture()], "Arting", factor)
    assert out.size == size
    upscales = [j for j in jobs(daemon) if j["kind"] == "upscale"]
    assert len(upscales) == passes
    assert upscales[0]["request"]["scale"] == (2 if factor <= 2 else 4)


def test_extras_batch_and_the_progress_bar(webui, daemon):
    state = webui.host.state
    outs = webui.host.extras([picture(), picture((48, 64))], "Arting", 2)
    assert [o.size for o in outs] == [(128, 96), (96, 128)]
    assert len([j for j in jobs(daemon) if j["kind"] == "upscale"]) == 2
    # the bar moved in sampling steps out of 100, one line of text, and was given back
    assert 100 in state.seen("sampling_steps")
    assert any(t and t.startswith("Arting: ") for t in state.seen("textinfo"))
    assert state.seen("job_count")[-1] == 0          # state.end()


def test_interrupt_cancels_the_upscale_and_keeps_the_picture(webui, daemon):
    daemon.do(daemon.sandbox.configure, generation_time=30)
    state = webui.host.state
    when(running(daemon), state.interrupt)
    state.begin(job="extras")
    (data,) = [x for x in webui.host.shared.sd_upscalers if x.name == "Arting"]
    out = data.scaler.upscale(picture(), 2, None)
    assert out.size == (128, 96)                     # resized by the WebUI as it was
    (job,) = jobs(daemon)
    assert job["state"] == "cancelled"


def test_the_upscaler_says_what_to_do_when_the_daemon_is_away(host, monkeypatch):
    arting = load(host, EXTENSION, monkeypatch)
    arting.point_at("http://127.0.0.1:9")
    with pytest.raises(Exception, match="127.0.0.1:9"):
        arting.host.extras([picture()], "Arting", 2)


# --- Hires. fix with the Arting script -----------------------------------------------------

def hires_run(webui, **fields):
    fields = {"prompt": "a lighthouse", "seed": 5, "steps": 5, "width": 512, "height": 512,
              "enable_hr": True, **fields}
    return webui.txt2img(**fields)


def test_hires_fix_with_arting_doubles_the_size_in_one_upscale_job(webui, daemon):
    p, processed = hires_run(webui, hr_scale=2, hr_upscaler="Arting", batch_size=2)
    assert [i.size for i in processed.images] == [(1024, 1024)] * 2
    upscales = [j for j in jobs(daemon) if j["kind"] == "upscale"]
    assert len(upscales) == 1 and upscales[0]["request"]["scale"] == 2
    fields = parse_infotext(processed.infotexts[0])
    assert (fields["Size-1"], fields["Hires upscale"], fields["Hires upscaler"]) == (
        "512", "2", "Arting")
    assert p.extra_generation_params["Hires upscaler"] == "Arting"


def test_hires_fix_with_the_webuis_own_upscaler_on_the_returned_images(webui, daemon):
    p, processed = hires_run(webui, hr_scale=1.5, hr_upscaler="Lanczos")
    assert processed.images[0].size == (768, 768)
    assert webui.host.resized_with == ["Lanczos"]
    assert not [j for j in jobs(daemon) if j["kind"] == "upscale"]
    assert parse_infotext(processed.infotexts[0])["Hires upscaler"] == "Lanczos"


def test_a_latent_hires_upscaler_is_replaced_by_arting_and_the_answer_says_so(webui, daemon):
    p, processed = hires_run(webui, hr_scale=2, hr_upscaler="Latent (bicubic)")
    assert processed.images[0].size == (1024, 1024)
    assert parse_infotext(processed.infotexts[0])["Hires upscaler"] == \
        "Arting (for Latent (bicubic))"
    assert any("Latent (bicubic) upscales the local model's latents" in c for c in p.comments)
    assert len([j for j in jobs(daemon) if j["kind"] == "upscale"]) == 1


def test_hires_resize_to_a_size_fills_and_cuts_it_as_the_webui_does(webui):
    _, processed = hires_run(webui, width=512, height=768, hr_resize_x=1024, hr_resize_y=1024,
                             hr_upscaler="Arting")
    assert processed.images[0].size == (1024, 1024)
    assert parse_infotext(processed.infotexts[0])["Hires resize-1"] == "1024"


def test_hires_fix_wins_over_the_scripts_own_upscale(webui, daemon):
    _, processed = webui.txt2img(controls={"upscale": "4x"}, prompt="p", seed=1, steps=5,
                                 width=512, height=512, enable_hr=True, hr_scale=2,
                                 hr_upscaler="Arting")
    assert processed.images[0].size == (1024, 1024)
    assert [j["request"]["scale"] for j in jobs(daemon) if j["kind"] == "upscale"] == [2]


def test_hires_fix_asking_for_arting_with_upscaling_off_is_refused_first(host, monkeypatch,
                                                                         make_daemon):
    daemon = make_daemon(upscale=False)
    arting = load(host, EXTENSION, monkeypatch)
    arting.point_at(daemon.url)
    with pytest.raises(Exception, match="upscaling off"):
        arting.txt2img(prompt="p", seed=1, steps=5, enable_hr=True, hr_upscaler="Arting")
    assert daemon.sandbox.requests_for("create") == []


def test_the_api_answer_carries_the_hires_fix_in_info(webui):
    p, processed = hires_run(webui, hr_scale=2, hr_upscaler="Arting")
    info = json.loads(processed.js())
    assert info["width"] == 512 and "Hires upscaler: Arting" in info["infotexts"][0]


def test_midjourneys_pictures_go_back_to_its_u_buttons_from_extras(host, monkeypatch,
                                                                   make_daemon):
    """Pictures the Arting script made on Midjourney, then upscaled in Extras: the
    upscaler sends only pixels, and the daemon finds the grid's quadrants by them."""
    with emulators(MidjourneyEmulator, generation_time=0.2, upscale_time=0.1,
                   quadrant_pixels=64 * 64) as start:
        proxy = start()
        daemon = make_daemon(providers=[{"name": "mj", "kind": "midjourney",
                                         "base_url": proxy.url + "/mj"}])
        arting = load(host, EXTENSION, monkeypatch)
        arting.point_at(daemon.url)
        _, processed = arting.txt2img({"model": "midjourney"}, prompt="a lighthouse", seed=5,
                                      n_iter=1, batch_size=2, steps=5, width=512, height=512)
        assert [i.size for i in processed.images] == [(64, 64)] * 2
        outs = host.extras(processed.images, "Arting", 2)
        assert [o.size for o in outs] == [(128, 128)] * 2
        upscales = [j for j in jobs(daemon) if j["kind"] == "upscale"]
        assert [(j["provider"], j["source"]) for j in upscales] == [
            ("mj", "sd-webui-upscaler")] * 2
        assert sorted(r.body["index"] for r in proxy.sandbox.requests_for("change")) == [1, 2]
        assert daemon.sandbox.requests_for("enhance_create") == []      # not Arting's
