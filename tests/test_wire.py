"""Arting's API connections (``providers/arting/wire.py``) against servers over real
sockets: plain asyncio servers that answer the way HTTP/1.1 servers do (kept alive,
``Connection: close``, chunked, gzip, a connection dropped mid-answer, TLS), and the
Arting client's errors when they fail."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import ssl
import subprocess
from pathlib import Path

import pytest

from arting_daemon import errors
from arting_daemon.config import Settings
from arting_daemon.providers.arting import client as client_module, wire
from arting_daemon.providers.arting.client import ArtingClient, Upstream

BODY = b'{"code": 100000, "message": "ok", "data": {"request_id": "r-1"}}'


class Server:
    """Answers each request with ``answer(request_head)`` (raw bytes); counts the
    connections it accepted and the requests it read."""

    def __init__(self, answer, tls: ssl.SSLContext | None = None) -> None:
        self.answer, self.tls = answer, tls
        self.connections = 0
        self.requests: list[bytes] = []
        self.url = ""
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                reply = self.answer(head)
                if reply is None:                  # drop the connection mid-answer
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"co")
                    await writer.drain()
                    break
                writer.write(reply)
                await writer.drain()
                if b"Connection: close" in reply:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass                                   # the client left, or the test ended
        finally:
            self._writers.discard(writer)
            writer.close()

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"{'https' if self.tls else 'http'}://localhost:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    def close_idle(self) -> None:
        """Close every connection from the server's side (as an idle timeout does)."""
        for writer in list(self._writers):
            writer.close()


def ok(body: bytes = BODY, *extra: str) -> bytes:
    head = ["HTTP/1.1 200 OK", "Content-Type: application/json",
            f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def test_connections_are_kept_alive_and_reused():
    async with Server(lambda head: ok()) as server:
        origin = wire.Origin(server.url, limit=2)
        try:
            answers = await asyncio.gather(*(origin.request(
                "POST", "/api/x", {"Authorization": "t"}, b"{}", 5) for _ in range(20)))
        finally:
            origin.close()
    assert {a.status for a in answers} == {200} and answers[0].body == BODY
    assert answers[0].headers["content-type"] == "application/json"   # any case
    assert server.connections <= 2 and len(server.requests) == 20
    first = server.requests[0]
    assert first.startswith(b"POST /api/x HTTP/1.1\r\nHost: localhost:")
    assert b"\r\nAuthorization: t\r\n" in first and b"\r\nContent-Length: 2\r\n" in first
    assert b"\r\nAccept-Encoding: gzip, deflate\r\n" in first    # as aiohttp asked


async def test_a_connection_the_server_closes_is_not_used_again():
    close_after = lambda head: ok(BODY, "Connection: close")   # noqa: E731
    async with Server(close_after) as server:
        origin = wire.Origin(server.url)
        try:
            for _ in range(3):
                assert (await origin.request("GET", "/a", {}, None, 5)).body == BODY
            assert server.connections == 3
        finally:
            origin.close()

    async with Server(lambda head: ok()) as server:
        origin = wire.Origin(server.url)
        try:
            await origin.request("GET", "/a", {}, None, 5)
            server.close_idle()                     # as the server's idle timeout does
            while origin._idle[-1].reusable:        # until its FIN arrives
                await asyncio.sleep(0.01)
            assert (await origin.request("GET", "/b", {}, None, 5)).body == BODY
            assert server.connections == 2
        finally:
            origin.close()


async def test_an_idle_connection_past_keepalive_is_not_reused(monkeypatch):
    monkeypatch.setattr(wire, "KEEPALIVE", 0.0)
    async with Server(lambda head: ok()) as server:
        origin = wire.Origin(server.url)
        try:
            await origin.request("GET", "/a", {}, None, 5)
            await origin.request("GET", "/b", {}, None, 5)
        finally:
            origin.close()
    assert server.connections == 2


async def test_chunked_and_gzip_answers_are_read_whole():
    packed = gzip.compress(BODY)
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
               b"Content-Encoding: gzip\r\n\r\n" +
               b"".join(b"%x\r\n%s\r\n" % (len(packed[i:i + 7]), packed[i:i + 7])
                        for i in range(0, len(packed), 7)) + b"0\r\n\r\n")
    async with Server(lambda head: chunked) as server:
        origin = wire.Origin(server.url)
        try:
            assert (await origin.request("GET", "/a", {}, None, 5)).body == BODY
            assert (await origin.request("GET", "/a", {}, None, 5)).body == BODY
        finally:
            origin.close()
    assert server.connections == 1


async def test_no_line_break_gets_into_a_request():
    origin = wire.Origin("http://localhost:9")
    for headers, target in [({"Cookie": "a\r\nX-Evil: 1"}, "/a"), ({}, "/a\r\nX: 1")]:
        with pytest.raises(ValueError, match="line break"):
            await origin.request("GET", target, headers, None, 5)


@contextlib.asynccontextmanager
async def arting_client(url: str, timeout: float = 5.0):
    settings = Settings(base_url=url, request_timeout=timeout)
    client = ArtingClient(Upstream.of(settings))
    try:
        yield client
    finally:
        await client.close()


async def test_failures_reach_the_client_as_its_errors():
    async with Server(lambda head: None) as server, arting_client(server.url) as client:
        with pytest.raises(errors.UpstreamUnavailable, match="connection to Arting broke"):
            await client.poll("r-1", "t")

    never = asyncio.Event()

    async def silent(reader, writer):
        await never.wait()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with arting_client(f"http://127.0.0.1:{port}", timeout=1.0) as client:
            with pytest.raises(errors.UpstreamTimeout, match="did not answer"):
                await client.poll("r-1", "t")
            assert not any(o._idle for o in client.director._origins.values())  # not kept
    finally:
        never.set()
        server.close()
        await server.wait_closed()

    with socket_closed_port() as port:
        async with arting_client(f"http://127.0.0.1:{port}") as client:
            with pytest.raises(errors.UpstreamUnreachable, match="could not be reached"):
                await client.poll("r-1", "t")


@contextlib.contextmanager
def socket_closed_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    yield port


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", str(where / "key.pem"), "-out", str(where / "cert.pem")],
                   check=True, capture_output=True, timeout=60)
    return where


async def test_https_verifies_the_server_and_names_it(certificate):
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(certificate / "cert.pem", certificate / "key.pem")
    async with Server(lambda head: ok(), tls=served) as server:
        origin = wire.Origin(server.url)            # the system's trust: not this one
        try:
            with pytest.raises(wire.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await origin.request("GET", "/a", {}, None, 5)
            origin._ssl = ssl.create_default_context(cafile=str(certificate / "cert.pem"))
            assert (await origin.request("GET", "/a", {}, None, 5)).body == BODY
        finally:
            origin.close()
        assert server.requests[-1].startswith(b"GET /a HTTP/1.1\r\nHost: localhost:")


PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 2000


def images(head: bytes) -> bytes:
    """``/img`` is an image; ``/hop`` redirects to it; ``/away`` to another host's."""
    path = head.split(b" ", 2)[1]
    if path == b"/img":
        return ok(PNG, "Content-Type: image/png")
    port = head.split(b"Host: localhost:", 1)[1].split(b"\r\n", 1)[0].decode()
    where = "/img" if path == b"/hop" else f"http://127.0.0.1:{port}/img"
    return f"HTTP/1.1 302 Found\r\nLocation: {where}\r\nContent-Length: 0\r\n\r\n".encode()


async def test_images_come_over_kept_alive_connections_and_follow_trusted_redirects(
        monkeypatch):
    async with Server(images) as server, arting_client(server.url) as client:
        assert await client.download(server.url + "/img") == PNG
        assert await client.download(server.url + "/hop") == PNG     # same host: followed
        assert server.connections == 1 and len(server.requests) == 3
        with pytest.raises(errors.BadUpstreamResponse, match="'127.0.0.1'.*image_hosts"):
            await client.download(server.url + "/away")              # a hop off the list
        assert len(server.requests) == 4                             # nothing sent there

        monkeypatch.setattr(client_module, "MAX_IMAGE_BYTES", 1000)
        with pytest.raises(errors.BadUpstreamResponse, match="larger than") as big:
            await client.download(server.url + "/img")
        assert not big.value.retryable


async def test_an_interim_answer_is_skipped_and_a_bad_encoding_fails_fast():
    hints = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" + ok()
    async with Server(lambda head: hints) as server:
        origin = wire.Origin(server.url)
        try:
            answer = await origin.request("GET", "/a", {}, None, 5)
        finally:
            origin.close()
    assert (answer.status, answer.body) == (200, BODY)

    fake = ok(b"not gzip at all", "Content-Encoding: gzip")
    async with Server(lambda head: fake) as server:
        origin = wire.Origin(server.url)
        try:           # an error at once, not a wait for the timeout
            with pytest.raises(ConnectionError, match="says gzip"):
                await asyncio.wait_for(origin.request("GET", "/a", {}, None, 30), 10)
        finally:
            origin.close()
