"""arting-2api for SD-WebUI (A1111 1.6–1.10, Forge): "Arting (remote)" in the Script
dropdown of txt2img and img2img, and "Arting" among the upscalers (Extras, Hires. fix).
The images come from the arting-2api daemon instead of the local model; the work is done
in the ``arting_webui`` package beside this folder.
"""

from modules import script_callbacks

from arting_webui import settings
from arting_webui.script import ArtingRemote, ArtingUpscaler  # noqa: F401 (the WebUI's to find)

script_callbacks.on_ui_settings(settings.register)
