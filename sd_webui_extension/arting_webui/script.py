"""What SD-WebUI takes from this extension: "Arting (remote)" in the Script dropdown of
txt2img and img2img (``ArtingRemote``), and the "Arting" upscaler (``ArtingUpscaler``).
A file in ``scripts/`` imports both; the WebUI collects the script from that file and the
upscaler from ``Upscaler``'s subclasses."""

from __future__ import annotations

from modules import scripts

from . import remote, ui
from .upscaler import ArtingUpscaler

__all__ = ["ArtingRemote", "ArtingUpscaler"]


class ArtingRemote(scripts.Script):
    def title(self):
        return "Arting (remote)"

    def show(self, is_img2img):
        return True

    def ui(self, is_img2img):
        return ui.build(self)

    def run(self, p, *args):
        return remote.run(p, args)
