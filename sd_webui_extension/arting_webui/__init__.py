"""Host-side package of the arting-2api SD-WebUI extension (A1111 and Forge).

``scripts/arting_remote.py`` is the only file SD-WebUI loads by itself; it imports
from here. Host modules (``modules.*``) are only touched through ``glue``, with
guards, so one code path serves A1111 1.6–1.10 and Forge.
"""
