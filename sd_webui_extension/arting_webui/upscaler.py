"""The "Arting" upscaler: Arting's image-enhance (2× or 4×, through the daemon) as one
of SD-WebUI's upscalers, so it is in the Extras tab (single image, batch, and the
WebUI's own ``extra-single-image``/``extra-batch-images`` API) and in Hires. fix's list.

SD-WebUI makes its list from the subclasses of ``modules.upscaler.Upscaler`` once the
scripts are loaded (``modelloader.load_upscalers``): the script file imports this
class, and that is all the registering there is (A1111 and Forge alike). The WebUI's
``Upscaler.upscale`` then asks ``do_upscale`` until the picture reaches the factor and
resizes it to the exact size; each pass here is the one image-enhance job that gets
closest. Interrupt cancels the job; the picture then stays as it was (resized by the
WebUI, as it does for its own upscalers).
"""

from __future__ import annotations

from modules.upscaler import Upscaler, UpscalerData

from . import encode, glue, settings
from .daemon_client import DaemonClient
from .upscale import NAME, arting_scale, follow

CLIENT_NAME = "sd-webui-upscaler"


class ArtingUpscaler(Upscaler):
    scalers: list

    def __init__(self, dirname=None):
        super().__init__(False)
        self.name = NAME
        self.scalers = [UpscalerData(NAME, None, self, 4)]
        self._wanted = (0, 0)

    def load_model(self, path):
        pass

    def upscale(self, img, scale, selected_model=None):
        self._wanted = (img.width * scale, img.height * scale)
        return super().upscale(img, scale, selected_model)

    def do_upscale(self, img, selected_model=None):
        factor = max(self._wanted[0] / img.width, self._wanted[1] / img.height, 1.0)
        config = settings.daemon_config()
        client = DaemonClient(config.url, timeout=min(30.0, config.timeout))
        job = follow(client, {"kind": "upscale", "scale": arting_scale(factor),
                              "images": [encode.png_b64(img.convert("RGB"))]},
                     glue.state(), timeout=config.timeout, client_name=CLIENT_NAME)
        if job is None:     # interrupted: the WebUI resizes the picture as it is
            return img
        return encode.decode(client.download(job["images"][0]["url"]))
