"""The script's controls: only components and arguments that gradio 3.41 (A1111) and
gradio 4.40 (Forge) both have. The UI is built at start-up, so its choices are known
without asking the daemon: the built-in ids, and the other providers' models its
catalog listed before (``models.py``); *Refresh models* reads the catalog again."""

from __future__ import annotations

from typing import Any

from . import glue, infotext, settings
from .choices import (DAEMON_DEFAULT, DEFAULT_LORA_WEIGHT, LORA_SLOTS, LORAS, NO_LORA,
                      NO_UPSCALE, UPSCALES)
from .daemon_client import DaemonClient, DaemonError
from .models import KNOWN

#: The status line waits this long for the daemon, so a dead address cannot stall the UI.
STATUS_TIMEOUT = 2.0


def build(script: Any) -> list:
    """Create the controls; returns those whose values ``run`` receives, in order:
    model, NSFW, (LoRA id, weight) per slot, then the upscale choice."""
    import gradio as gr

    eid = script.elem_id
    KNOWN.keep_in(glue.models_file())
    with gr.Row():
        model = gr.Dropdown(label="Arting model", choices=[DAEMON_DEFAULT, *KNOWN.names()],
                            value=DAEMON_DEFAULT, allow_custom_value=True,
                            elem_id=eid("model"))
        nsfw = gr.Checkbox(label="Allow NSFW", value=False, elem_id=eid("nsfw"))
    loras = []
    for slot in range(1, LORA_SLOTS + 1):
        with gr.Row():
            lora = gr.Dropdown(label=f"LoRA {slot}", choices=[NO_LORA, *LORAS], value=NO_LORA,
                               allow_custom_value=True, elem_id=eid(f"lora{slot}"))
            weight = gr.Slider(label=f"LoRA {slot} weight", minimum=0.0, maximum=2.0,
                               step=0.05, value=DEFAULT_LORA_WEIGHT,
                               elem_id=eid(f"lora{slot}_weight"))
        loras.append((lora, weight))
    with gr.Row():
        upscale = gr.Dropdown(label="Upscale with Arting", choices=list(UPSCALES),
                              value=NO_UPSCALE, elem_id=eid("upscale"))
    with gr.Row():
        # A callable value is evaluated again on every page load, in both gradio versions.
        line = gr.Markdown(value=status_line, elem_id=eid("status"))
        check = gr.Button(value="Check daemon", elem_id=eid("check"))
        refresh = gr.Button(value="Refresh models", elem_id=eid("refresh_models"))
    check.click(fn=status_line, inputs=[], outputs=[line])
    refresh.click(fn=refreshed_models, inputs=[], outputs=[model])
    script.infotext_fields = infotext.paste_fields(model, nsfw, loras, upscale)
    return [model, nsfw, *(c for pair in loras for c in pair), upscale]


def status_line() -> str:
    """One line of Markdown: is the daemon there, and can it do image-to-image."""
    config = settings.daemon_config()
    where = f"`{config.url}`" + ("" if config.source == "settings" else f" ({config.source})")
    try:
        catalog = DaemonClient(config.url, timeout=STATUS_TIMEOUT).catalog()
    except DaemonError as err:
        return f"**Arting daemon: not reachable** at {where}. {err}"
    KNOWN.learn(catalog)
    img2img = "on" if catalog.get("img2img") else "off (daemon setting `img2img`)"
    upscale = "on" if catalog.get("upscale") else "off (daemon setting `upscale`)"
    return (f"**Arting daemon: reachable** at {where} · {len(catalog.get('models') or [])} "
            f"models · image-to-image {img2img} · upscale {upscale}")


def refreshed_models() -> dict:
    """The model dropdown's choices, from the daemon's catalog now (or as they were, if
    it does not answer): every provider's models, with their provider."""
    import gradio as gr

    config = settings.daemon_config()
    try:
        KNOWN.learn(DaemonClient(config.url, timeout=STATUS_TIMEOUT).catalog())
    except DaemonError:
        pass
    return gr.update(choices=[DAEMON_DEFAULT, *KNOWN.names()])
