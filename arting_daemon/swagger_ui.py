"""Swagger UI's files for ``/docs``: fetched when arting-2api is installed or built, and
not kept in the repository.

The page needs two files of Swagger UI's own distribution, the npm package
``swagger-ui-dist``: its script and its style sheet (with its licence and notice, which
go along). They come from the npm registry, pinned to one version and checked against
the registry's SHA-512 integrity hash before anything is written, and land in
``static/swagger-ui/``, where the daemon serves them from; nothing is loaded at run time.

``install.py``, the Dockerfile and the package's build (``setup.py``) run this; by hand:
``python -m arting_daemon.swagger_ui``. A mirror of the registry is named as for npm
itself (``npm_config_registry``); an intercepting proxy's CA as for OpenSSL
(``SSL_CERT_FILE``). Only the standard library is used: it runs before anything else
is installed.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import sys
import tarfile
import urllib.request
from pathlib import Path

VERSION = "5.36.0"
#: The tarball's ``dist.integrity`` as the npm registry gives it (``npm view
#: swagger-ui-dist@VERSION dist.integrity``).
INTEGRITY = ("sha512-Lt6/Kb0gXmLdiabLhvso4VdJP9V7qJWB0zh0gzeXUV3+CMOTzMmvpJRSXN7EAjfwixwm"
             "oi9ezDbLHiexC7lA9A==")
REGISTRY = "https://registry.npmjs.org"
FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "LICENSE", "NOTICE")
DIRECTORY = Path(__file__).resolve().parent / "static" / "swagger-ui"
#: Written last, so that its presence means the whole set of this version is there.
STAMP = "VERSION"
MAX_BYTES = 32 * 1024 * 1024


def installed(directory: Path = DIRECTORY) -> bool:
    stamp = directory / STAMP
    return (stamp.is_file() and stamp.read_text().split() == [VERSION, INTEGRITY]
            and all((directory / name).is_file() for name in FILES))


def tarball_url() -> str:
    registry = os.environ.get("npm_config_registry") or os.environ.get(
        "NPM_CONFIG_REGISTRY") or REGISTRY
    return f"{registry.rstrip('/')}/swagger-ui-dist/-/swagger-ui-dist-{VERSION}.tgz"


def verified(data: bytes) -> bytes:
    algorithm, _, expected = INTEGRITY.partition("-")
    got = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if got != expected:
        raise ValueError(f"swagger-ui-dist {VERSION} does not match its pinned {algorithm} "
                         "hash: refusing it (a broken mirror or download, or a changed file)")
    return data


def unpack(data: bytes, directory: Path = DIRECTORY) -> None:
    """Write ``FILES`` from the (verified) tarball, each whole or not at all, then the
    stamp."""
    directory.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for name in FILES:
            try:
                member = tar.extractfile(f"package/{name}")
            except KeyError:
                member = None
            if member is None:
                raise ValueError(f"swagger-ui-dist {VERSION} has no file {name}")
            part = directory / f"{name}.part"
            part.write_bytes(member.read())
            part.replace(directory / name)
    (directory / STAMP).write_text(f"{VERSION} {INTEGRITY}\n")


def fetch(directory: Path = DIRECTORY) -> None:
    url = tarball_url()
    try:
        with urllib.request.urlopen(url, timeout=120) as resp:
            data = resp.read(MAX_BYTES + 1)
    except OSError as exc:
        raise OSError(f"could not fetch Swagger UI's files from {url}: {exc}") from exc
    if len(data) > MAX_BYTES:
        raise ValueError(f"{url} is larger than {MAX_BYTES} bytes")
    unpack(verified(data), directory)


def main() -> int:
    if installed():
        print(f"Swagger UI {VERSION} is in {DIRECTORY}")
        return 0
    try:
        fetch()
    except (OSError, ValueError) as exc:
        print(f"error: {exc}\n(/docs needs these files; npm_config_registry names a "
              "mirror of the npm registry)", file=sys.stderr)
        return 1
    print(f"Swagger UI {VERSION} fetched into {DIRECTORY}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
