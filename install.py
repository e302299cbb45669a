#!/usr/bin/env python3
"""One-step setup for arting-2api: a virtual environment with the daemon installed.

    python install.py            # .venv with the daemon
    python install.py --dev      # … and everything the tests need, and the example
                                 # provider plugin (plugins/arting-2api-comfyui)
    python install.py --comfyui ~/ComfyUI      # also link the ComfyUI node pack
    python install.py --webui ~/stable-diffusion-webui   # also link the SD-WebUI extension

Safe to run again: it reuses the environment and leaves existing links alone.
Only the standard library is used here, so it runs on a fresh machine.

Installed into a host app from its URL, this repository is a ComfyUI custom node folder
and an SD-WebUI extension, and the hosts run this file themselves, without arguments
(ComfyUI-Manager after cloning it into ``custom_nodes/``, SD-WebUI at every start for
``extensions/``). Then it installs no daemon into the host's Python: it only does the
extension's own checks (``host_checks``).
"""

from __future__ import annotations

import argparse
import os
import runpy
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
MIN_PYTHON = (3, 10)


def say(message: str) -> None:
    print(f"[install] {message}", flush=True)


def venv_python(env: Path) -> Path:
    return env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_venv(env: Path) -> Path:
    python = venv_python(env)
    if python.exists():
        say(f"using the existing environment {env}")
    else:
        say(f"creating the virtual environment {env}")
        venv.EnvBuilder(with_pip=True, upgrade_deps=False).create(env)
    return python


def fetch_swagger_ui() -> None:
    """Swagger UI's files for /docs, from npm (the package's build fetches them too, but
    an editable install would only warn if it could not)."""
    fetched = subprocess.run([sys.executable, str(ROOT / "arting_daemon" / "swagger_ui.py")])
    if fetched.returncode != 0:
        raise SystemExit("[install] could not fetch Swagger UI's files (see above).")


#: The example provider plugin, installed (editable) with ``--dev``: its tests run with the
#: project's.
EXAMPLE_PLUGIN = ROOT / "plugins" / "arting-2api-comfyui"


def pip_install(python: Path, dev: bool) -> None:
    """The package, installed so that its entry points (its provider kinds, the
    ``arting-daemon`` command) exist; with ``dev`` the example plugin too."""
    targets = ["--editable", f"{ROOT}[dev]" if dev else str(ROOT)]
    if dev:
        targets += ["--editable", str(EXAMPLE_PLUGIN)]
    say("installing arting-2api" + (" with the test dependencies and the example plugin"
                                    if dev else "")
        + " (this can take a few minutes the first time)")
    subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check",
                    "--quiet", *targets], check=True)


def link(source: Path, host_dir: Path, sub: str, name: str) -> None:
    """Link a plugin folder into its host application (copy where links are not allowed)."""
    if not host_dir.is_dir():
        raise SystemExit(f"[install] {host_dir} is not a folder; give the host's install "
                         f"folder (the one that contains `{sub}`).")
    parent = host_dir / sub
    parent.mkdir(exist_ok=True)
    target = parent / name
    if target.is_symlink() and target.resolve() == source.resolve():
        say(f"{target} already links to {source}")
        return
    if target.exists() or target.is_symlink():
        raise SystemExit(f"[install] {target} exists and is not our link; move it away "
                         "first.")
    try:
        target.symlink_to(source, target_is_directory=True)
        say(f"linked {target} -> {source}")
    except OSError:
        shutil.copytree(source, target, symlinks=False)
        say(f"copied {source} to {target} (this system does not allow links; run the "
            "installer again after updating)")


def host_of(root: Path = ROOT) -> str | None:
    """The host app whose extension folder this checkout is in (``comfyui`` or ``webui``),
    from where it lies: ``ComfyUI/custom_nodes/<it>`` (or any ``custom_nodes/`` while
    ComfyUI-Manager, which sets ``COMFYUI_PATH``, runs it) or ``<webui>/extensions/<it>``."""
    parent, home = root.parent, root.parent.parent
    if parent.name == "custom_nodes" and ((home / "comfy").is_dir()
                                          or os.environ.get("COMFYUI_PATH")):
        return "comfyui"
    if parent.name == "extensions" and (home / "modules").is_dir() and any(
            (home / name).is_file() for name in ("launch.py", "webui.py")):
        return "webui"
    return None


def host_checks(host: str) -> int:
    """What runs instead of the installer inside a host: the SD-WebUI extension's own
    install.py (it installs nothing, and says when the extension cannot work); nothing
    for ComfyUI (the node pack needs nothing beyond ComfyUI)."""
    if host == "webui":
        runpy.run_path(str(ROOT / "sd_webui_extension" / "install.py"), run_name="__main__")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    host = host_of() if not argv else None
    if host is not None:
        return host_checks(host)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dev", action="store_true",
                        help="also install the test dependencies (pytest, openai, webuiapi …)")
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv",
                        help="where to create the environment (default: .venv here)")
    parser.add_argument("--comfyui", type=Path, metavar="PATH",
                        help="ComfyUI folder to link the node pack into (custom_nodes/)")
    parser.add_argument("--webui", type=Path, metavar="PATH",
                        help="SD-WebUI (A1111/Forge) folder to link the extension into "
                             "(extensions/)")
    args = parser.parse_args(argv)

    if sys.version_info < MIN_PYTHON:
        raise SystemExit(f"[install] arting-2api needs Python {'.'.join(map(str, MIN_PYTHON))}"
                         f" or newer; this is {sys.version.split()[0]}.")
    python = ensure_venv(args.venv)
    fetch_swagger_ui()
    pip_install(python, args.dev)
    if args.comfyui:
        link(ROOT / "comfyui_nodes", args.comfyui.expanduser(), "custom_nodes", "arting-2api")
    if args.webui:
        link(ROOT / "sd_webui_extension", args.webui.expanduser(), "extensions", "arting-2api")

    bindir = python.parent
    say("done. Next:")
    print(f"  try it without an account:  {bindir / 'arting-daemon'} --sandbox")
    print(f"  use Arting for real:        ARTING_AUTH_TOKEN=<token> {bindir / 'arting-daemon'}")
    if args.dev:
        print(f"  run the tests:              {python} -m pytest")
    print("  then point your client at http://127.0.0.1:8090 (see README.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
