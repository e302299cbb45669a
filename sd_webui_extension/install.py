"""Run by SD-WebUI at every start. The extension needs nothing beyond what SD-WebUI
ships (the standard library and Pillow), so this installs nothing; it only says so
when the extension cannot work, e.g. the shared client did not come along."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def skip_install():
    try:
        import launch
    except ImportError:
        return False
    return bool(getattr(getattr(launch, "args", None), "skip_install", False))


def problems():
    if sys.version_info < (3, 10):
        yield f"needs Python 3.10 or newer; this SD-WebUI runs {sys.version.split()[0]}."
    for shared in ("daemon_client.py", "catalog.py"):  # links into the ComfyUI pack
        if not (HERE / "arting_webui" / shared).is_file():
            yield (f"arting_webui/{shared} is missing: install the extension from a full "
                   "arting-2api checkout with `python install.py --webui <webui folder>`.")


def main():
    if skip_install():
        return
    for problem in problems():
        print(f"[arting-2api] {problem}")


if __name__ == "__main__":
    main()
