"""Host-side package of the arting-2api SD-WebUI extension (A1111 and Forge).

``scripts/arting_remote.py`` is the only file SD-WebUI loads by itself; it imports
from here. Host modules (``modules.*``) are only touched through ``glue``, with
guards, so one code path serves A1111 1.6–1.10 and Forge.

The daemon client and the catalogue are the ComfyUI pack's files
(``comfyui_nodes/arting_comfy/``), linked here. Where the pack is beside this folder (a
checkout, or the repository installed from its URL) they are read from there: a clone
made where links are not allowed (git on Windows, by default) has the links as small
text files instead. An extension copied on its own carries real copies.
"""

from pathlib import Path

_PACK = Path(__file__).resolve().parent.parent.parent / "comfyui_nodes" / "arting_comfy"
if (_PACK / "daemon_client.py").is_file():
    __path__.insert(0, str(_PACK))  # noqa: F821 (a package's own __path__)
