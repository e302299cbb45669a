"""Swagger UI's files for /docs (``arting_daemon/swagger_ui.py``), fetched from a registry
mirror on loopback (``npm_config_registry``) as from npm: written only when the tarball
matches its pinned hash, and the daemon saying how to get them when they are missing."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import tarfile

import httpx
import pytest
from aiohttp import web

from arting_daemon import swagger_ui
from arting_daemon.facades import docs

FILES = {name: f"the {name} of swagger-ui-dist".encode() for name in swagger_ui.FILES}


def tarball(files: dict[str, bytes]) -> bytes:
    """A package tarball as npm serves it: every file under ``package/``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


@pytest.fixture
async def mirror(aiohttp_server, monkeypatch):
    """A registry mirror serving one tarball at npm's path for the pinned version."""
    served: dict[str, bytes] = {}

    async def tgz(request: web.Request) -> web.Response:
        return web.Response(body=served["tarball"])

    app = web.Application()
    app.router.add_get(f"/swagger-ui-dist/-/swagger-ui-dist-{swagger_ui.VERSION}.tgz", tgz)
    server = await aiohttp_server(app)
    monkeypatch.setenv("npm_config_registry", str(server.make_url("/")))
    return served


async def test_a_tarball_matching_its_pinned_hash_is_unpacked(mirror, monkeypatch, tmp_path):
    mirror["tarball"] = tarball({**FILES, "swagger-ui-es-bundle.js": b"not needed"})
    monkeypatch.setattr(swagger_ui, "INTEGRITY", integrity(mirror["tarball"]))
    assert not swagger_ui.installed(tmp_path)
    await asyncio.to_thread(swagger_ui.fetch, tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name in FILES} == FILES
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*FILES, "VERSION"])
    assert swagger_ui.installed(tmp_path)


async def test_a_tarball_that_does_not_match_is_refused_and_nothing_written(mirror, tmp_path):
    mirror["tarball"] = tarball(FILES)         # not the pinned swagger-ui-dist
    with pytest.raises(ValueError, match="does not match its pinned sha512 hash"):
        await asyncio.to_thread(swagger_ui.fetch, tmp_path)
    assert list(tmp_path.iterdir()) == []


async def test_a_tarball_without_a_needed_file_installs_nothing(mirror, monkeypatch,
                                                                tmp_path):
    mirror["tarball"] = tarball({"swagger-ui-bundle.js": b"only this"})
    monkeypatch.setattr(swagger_ui, "INTEGRITY", integrity(mirror["tarball"]))
    with pytest.raises(ValueError, match="has no file swagger-ui.css"):
        await asyncio.to_thread(swagger_ui.fetch, tmp_path)
    assert not swagger_ui.installed(tmp_path)


def test_an_unreachable_registry_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("npm_config_registry", "http://127.0.0.1:9/npm")
    with pytest.raises(OSError, match=r"could not fetch Swagger UI's files from "
                                      r"http://127\.0\.0\.1:9/npm/swagger-ui-dist/"):
        swagger_ui.fetch(tmp_path)


def test_without_the_files_the_daemon_runs_and_docs_say_how_to_get_them(make_daemon,
                                                                         monkeypatch, caplog):
    monkeypatch.setattr(swagger_ui, "installed", lambda directory=None: False)
    docs._installed.cache_clear()
    try:
        daemon = make_daemon()
        resp = httpx.get(daemon.url + "/docs/swagger-ui-bundle.js")
        assert resp.status_code == 503
        assert "python -m arting_daemon.swagger_ui" in resp.text
        assert httpx.get(daemon.url + "/healthz").status_code == 200
        assert "/docs will not work" in caplog.text
    finally:
        docs._installed.cache_clear()
