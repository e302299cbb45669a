"""arting-2api's repository as an SD-WebUI extension (installed from its URL): the
WebUI loads this before it parses its command line; the flag is the extension's own,
from ``sd_webui_extension/preload.py``."""

import importlib.util
import os


def preload(parser):
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sd_webui_extension",
                        "preload.py")
    spec = importlib.util.spec_from_file_location("arting_webui_preload", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.preload(parser)
