"""The node pack's translations, in ComfyUI's convention for custom nodes
(``locales/<language>/nodeDefs.json``, read by ComfyUI's server and shown by its
frontend): well-formed, and covering every node, input and output the pack has."""

from __future__ import annotations

import json

import pytest
from comfy_harness import PACK, ROOT

LANGUAGES = sorted(p.name for p in (PACK / "locales").iterdir())


def test_the_languages_are_the_frontends_codes():
    assert LANGUAGES == ["zh"]
    assert (ROOT / "locales").resolve() == (PACK / "locales").resolve()  # installed from URL


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_node_input_and_output_is_translated(pack, language):
    path = PACK / "locales" / language / "nodeDefs.json"
    defs = json.loads(path.read_text(encoding="utf-8"))
    assert set(defs) == set(pack.NODE_CLASS_MAPPINGS)
    for name, cls in pack.NODE_CLASS_MAPPINGS.items():
        ours = defs[name]
        assert set(ours) == {"display_name", "description", "inputs", "outputs"}, name
        assert ours["display_name"] and ours["description"]
        types = cls.INPUT_TYPES()
        inputs = {**types["required"], **types.get("optional", {})}
        assert set(ours["inputs"]) == set(inputs), name
        for input_name, spec in inputs.items():
            said = ours["inputs"][input_name]
            options = spec[1] if len(spec) > 1 else {}
            wanted = {"name", "tooltip"} if "tooltip" in options else {"name"}
            assert set(said) == wanted and all(said.values()), (name, input_name)
        assert set(ours["outputs"]) == {str(i) for i in range(len(cls.RETURN_TYPES))}
        for index, tooltip in enumerate(cls.OUTPUT_TOOLTIPS):
            said = ours["outputs"][str(index)]
            assert said["name"] and said["tooltip"] and tooltip, (name, index)
