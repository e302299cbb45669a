"""arting-2api's repository as a ComfyUI custom node folder.

Installed from its URL (ComfyUI-Manager's "Install via Git URL", or ``git clone`` into
``custom_nodes/``), the whole repository lands in ``custom_nodes/`` and ComfyUI imports
this file: it hands over the node pack, which is ``comfyui_nodes/`` (the folder the Comfy
Registry publishes, and ``install.py --comfyui`` links). Its translations are
``locales/`` here, a link to the pack's.

The project's own test command imports this file too (pytest sets up every folder that
has an ``__init__.py``), as a lone module when the clone's folder is not a valid package
name, such as the default ``arting-2api``: then it hands over nothing.
"""

if __package__:
    from .comfyui_nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

    __all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
