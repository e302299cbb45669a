"""The rules every facade shares: sizes, models, samplers, LoRAs, limits."""

from __future__ import annotations

import pytest

from arting_daemon.config import Settings
from arting_daemon.errors import InvalidRequest, ModelNotFound
from arting_daemon.catalog import LORAS
from arting_daemon.generation import (Catalog, Lora, Rules, build_generation, fit_size, parse_loras,
                                      parse_size, prompt_loras, resolve_sampler)

S = Rules.of(Settings())


@pytest.mark.parametrize("size, expected", [
    ("512x768", (512, 768)),
    ("1024x1024", (1024, 1024)),
    ("1792x1024", (1352, 768)),     # area capped at 1024², aspect kept, multiples of 8
    ("1536x864", (1360, 768)),
    ("256x256", (256, 256)),
    ("64x64", (256, 256)),          # grown to min_side
    ("4000x100", (1536, 256)),      # clamped: extreme aspect ratios cannot be kept
    ("833x1217", (832, 1216)),
])
def test_size_rule(size, expected):
    w, h = fit_size(*parse_size(size, S), S)
    assert (w, h) == expected
    assert w % 8 == 0 and h % 8 == 0 and w * h <= S.max_pixels


def test_auto_and_missing_size_use_the_default():
    assert parse_size("auto", S) == parse_size(None, S) == (512, 768)
    with pytest.raises(InvalidRequest) as err:
        parse_size("big", S)
    assert err.value.param == "size"


def test_model_names():
    cat = Catalog(S)
    assert cat.resolve_model("oneforallanime") == "oneFORALLAnime"
    assert cat.resolve_model("asyncsMIX_v7.safetensors [0123abcd]") == "asyncsMIX_v7"
    for name in ("dall-e-3", "gpt-image-1", None, "", "sdxl"):
        assert cat.resolve_model(name) == S.default_model
    strict = Catalog(Rules.of(Settings(unknown_models="reject",
                                          extra_models=["newModel_v1"])))
    assert strict.resolve_model("newModel_v1") == "newModel_v1"
    assert strict.resolve_model("dall-e-2") == S.default_model
    with pytest.raises(ModelNotFound):
        strict.resolve_model("sdxl")


def test_samplers_are_lenient_like_a1111():
    assert resolve_sampler("euler a") == "Euler a"
    assert resolve_sampler("DPM++ 2M Karras") == "DPM++ 2M Karras"
    assert resolve_sampler("DPM++ 2M Automatic") == "DPM++ 2M"
    assert resolve_sampler("no such sampler") == "Euler a"
    assert resolve_sampler("DPM++ 2M", "karras") == "DPM++ 2M Karras"
    assert resolve_sampler("dpm++  2m", "Karras") == "DPM++ 2M Karras"
    assert resolve_sampler("DPM++ 2M SGM Uniform") == "DPM++ 2M"
    assert resolve_sampler("Euler", "karras") == "Euler"          # no Karras variant
    assert resolve_sampler("Euler Karras") == "Euler"
    assert resolve_sampler("Heun", "exponential") == "Heun"


def test_a1111_lora_tags_in_the_prompt():
    prompt, loras, missing = prompt_loras(
        "a knight, <lora:add_detail:0.6>, <LORA:detail tweaker> <lora:nope:1> at night", LORAS)
    assert prompt == "a knight, at night"
    assert loras == (Lora(id="add_detail", weight=0.6), Lora(id="add_detail", weight=1.0))
    assert missing == ["nope"]
    assert prompt_loras("no tags", LORAS) == ("no tags", (), [])
    with pytest.raises(InvalidRequest) as err:
        prompt_loras("<lora:add_detail:lots>", LORAS)
    assert err.value.param == "prompt"


def test_loras_in_every_spelling():
    assert parse_loras([{"id": "add_detail", "weight": 0.5}, "Sv5-10:1"]) == (
        Lora(id="add_detail", weight=0.5), Lora(id="Sv5-10", weight=1.0))
    assert parse_loras(lora_ids="a,b", lora_weight="0.7") == (Lora(id="a", weight=0.7),
                                                              Lora(id="b", weight=0.7))
    assert parse_loras(lora_ids="a,b", lora_weight="0.1,0.2")[1].weight == 0.2
    with pytest.raises(InvalidRequest):
        parse_loras(lora_ids="a,b,c", lora_weight="0.1,0.2")


@pytest.mark.parametrize("kwargs, param", [
    ({"prompt": ""}, "prompt"),
    ({"prompt": None}, "prompt"),
    ({"prompt": "x" * 4001}, "prompt"),
    ({"prompt": "p", "n": 5}, "n"),
    ({"prompt": "p", "n": 0}, "n"),
    ({"prompt": "p", "steps": 0}, "steps"),
    ({"prompt": "p", "size": "wide"}, "size"),
    ({"prompt": "p", "loras": [Lora(id="a,b")]}, "loras"),
])
def test_limits_name_the_field(kwargs, param):
    with pytest.raises(InvalidRequest) as err:
        build_generation(S, Catalog(S), **kwargs)
    assert err.value.param == param


def test_a_generation_is_fully_resolved():
    gen = build_generation(S, Catalog(S), prompt=" a cat ", seed=-1, n=3)
    assert gen.prompt == "a cat" and gen.seed >= 0
    assert gen.seeds() == [gen.seed, gen.seed + 1, gen.seed + 2]
    assert (gen.width, gen.height, gen.sampler, gen.steps) == (512, 768, "Euler a", 25)
