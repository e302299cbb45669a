"""arting-2api for SD-WebUI (A1111 1.6–1.10, Forge): "Arting (remote)" in the Script
dropdown of txt2img and img2img. The images come from the arting-2api daemon instead
of the local model; the work is done in the ``arting_webui`` package beside this folder.
"""

from modules import script_callbacks, scripts

from arting_webui import remote, settings, ui


class ArtingRemote(scripts.Script):
    def title(self):
        return "Arting (remote)"

    def show(self, is_img2img):
        return True

    def ui(self, is_img2img):
        return ui.build(self)

    def run(self, p, *args):
        return remote.run(p, args)


script_callbacks.on_ui_settings(settings.register)
