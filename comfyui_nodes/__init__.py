"""arting-2api's ComfyUI node pack: the "Arting Generate" and "Arting Upscale" nodes.

ComfyUI imports this folder under a module name made from its path, so everything
here is imported relatively. Nothing of ComfyUI, torch or the network is touched at
import time (see ``arting_comfy/host.py``).
"""

from .arting_comfy.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
