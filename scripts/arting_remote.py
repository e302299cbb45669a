"""arting-2api's repository as an SD-WebUI extension (A1111, Forge).

Installed from its URL (the WebUI's *Extensions → Install from URL*), the whole
repository is the extension folder and the WebUI loads this file. The extension lives in
``sd_webui_extension/`` (which ``install.py --webui`` links by itself); its package is
imported from there. The WebUI puts ``sys.path`` back after this file, and the package
stays imported.
"""

import os
import sys

from modules import script_callbacks

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "sd_webui_extension"))

from arting_webui import settings  # noqa: E402
# the WebUI finds the script and the upscaler among this module's names
from arting_webui.script import ArtingRemote, ArtingUpscaler  # noqa: E402,F401

script_callbacks.on_ui_settings(settings.register)
