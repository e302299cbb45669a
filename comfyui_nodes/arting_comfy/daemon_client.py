"""A small client of the arting-2api daemon's job API, standard library only.

This one file serves both plugins (the ComfyUI node pack and the SD-WebUI
extension), which run inside host applications whose Python environments we do not
control: so no third-party imports, and Python 3.10 syntax.

    client = DaemonClient()                      # ARTING_DAEMON_URL or 127.0.0.1:8090
    job = client.run({"prompt": "a lighthouse"}, on_progress=print)
    pngs = [client.download(img["url"]) for img in job["images"]]

``run`` follows the job over the daemon's WebSocket (``/arting/v1/ws``), so progress
arrives as it happens, through a minimal RFC 6455 client written here (the hosts may
have no WebSocket package); where the daemon has none, or the connection breaks off,
it polls the job instead.

Every error is a ``DaemonError`` whose message is one sentence a user can act on.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any, Callable, Iterator

DEFAULT_URL = "http://127.0.0.1:8090"
TERMINAL = ("succeeded", "failed", "cancelled")
#: How often ``run`` asks ``should_cancel`` while it waits between polls.
CANCEL_CHECK = 0.1
#: How long ``run`` keeps polling through a daemon that stopped answering (a restart).
POLL_GRACE = 10.0
#: Where the daemon's job events come over a WebSocket.
WS_PATH = "/arting/v1/ws"


class DaemonError(Exception):
    """Something went wrong; ``str(err)`` tells the user what to do.

    ``status`` and ``code`` are the daemon's HTTP status and error code when it
    answered with an error, else None.
    """

    def __init__(self, message: str, *, status: int | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class DaemonUnreachable(DaemonError):
    pass


class JobFailed(DaemonError):
    pass


class JobCancelled(DaemonError):
    pass


def resolve_url(explicit: str | None = None) -> str:
    """Daemon URL: an explicit value, else ARTING_DAEMON_URL, else the default.

    A bare ``host:port`` gets ``http://`` in front, as people type it that way."""
    url = (explicit or "").strip() or os.environ.get("ARTING_DAEMON_URL", "").strip()
    url = (url or DEFAULT_URL).rstrip("/")
    if "://" not in url:
        url = "http://" + url
    return url


def status_line(job: dict) -> str:
    """One short line for a host's status text: queued / generating / ETA."""
    state, eta = job.get("state"), job.get("eta_seconds")
    left = f", about {eta:.0f} s left" if isinstance(eta, (int, float)) and eta >= 1 else ""
    if state == "queued":
        place = job.get("queue_position")
        return f"Queued{f' (#{place} in line)' if place else ''}{left}"
    if state == "submitting":
        return f"Sending to Arting{left}"
    if state == "running":
        doing = "Upscaling" if job.get("kind") == "upscale" else "Generating"
        return f"{doing} {round(100 * (job.get('progress') or 0))}%{left}"
    if state == "downloading":
        return "Downloading the images"
    if state == "succeeded":
        count = len(job.get("images") or [])
        return f"Done: {count} image{'s' if count != 1 else ''}"
    if state == "failed":
        return "Failed: " + ((job.get("error") or {}).get("message") or "unknown error")
    return "Cancelled"


def _quote(job_id: str) -> str:
    return urllib.parse.quote(str(job_id), safe="")


class DaemonClient:
    def __init__(self, base_url: str | None = None, api_key: str | None = None,
                 timeout: float = 10.0, live: bool = True) -> None:
        self.base_url = resolve_url(base_url)
        if not self.base_url.startswith(("http://", "https://")):
            raise DaemonError(f"The daemon URL {self.base_url} must start with http:// or "
                              f"https://, like {DEFAULT_URL}.")
        self.api_key = api_key if api_key is not None else os.environ.get("ARTING_API_KEY")
        self.timeout = timeout
        #: Follow jobs over the WebSocket (else only by polling).
        self.live = live

    # --- calls ---------------------------------------------------------------------------

    def health(self) -> dict:
        return self._request("GET", "/healthz")

    def catalog(self) -> dict:
        return self._request("GET", "/arting/v1/catalog")

    def submit(self, request: dict, idempotency_key: str | None = None,
               client_name: str = "plugin") -> dict:
        """Queue a job. With the same ``idempotency_key`` a resubmit returns the same job,
        so a submit whose answer got lost is repeated (here, twice) without a second
        generation."""
        headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex,
                   "X-Arting-Client": client_name}
        return self._request("POST", "/arting/v1/jobs", request, headers=headers, retries=2)

    def job(self, job_id: str) -> dict:
        return self._request("GET", f"/arting/v1/jobs/{_quote(job_id)}")

    def cancel(self, job_id: str) -> dict:
        return self._request("DELETE", f"/arting/v1/jobs/{_quote(job_id)}")

    def download(self, url: str) -> bytes:
        if url.startswith("/"):
            url = self.base_url + url
        with self._open(urllib.request.Request(url, headers=self._headers()), url) as resp:
            return self._read(resp)

    def events(self, job_id: str) -> Iterator[dict]:
        """The job's server-sent events, each the job as a dict, until it ends."""
        url = f"{self.base_url}/arting/v1/jobs/{_quote(job_id)}/events"
        req = urllib.request.Request(url, headers={**self._headers(),
                                                   "Accept": "text/event-stream"})
        with self._open(req, url, timeout=max(self.timeout, 30.0)) as resp:
            data: list[str] = []
            for raw in self._lines(resp):
                line = raw.decode("utf-8").rstrip("\r\n")
                if line.startswith("data:"):
                    data.append(line[5:].lstrip())
                elif not line and data:
                    job = json.loads("\n".join(data))
                    data = []
                    yield job
                    if job.get("state") in TERMINAL:
                        return
        raise DaemonUnreachable(f"The Arting daemon at {self.base_url} ended the event stream "
                                "before the job ended; follow it again.")

    def run(self, request: dict, *, on_progress: Callable[[dict], None] | None = None,
            should_cancel: Callable[[], bool] | None = None, poll_interval: float = 0.5,
            timeout: float = 900.0, client_name: str = "plugin",
            idempotency_key: str | None = None) -> dict:
        """Submit, follow the job until it ends, and return it (succeeded).

        The job is followed over the daemon's WebSocket (``live``), else by polling it
        every ``poll_interval`` seconds. ``on_progress`` gets every job update. ``should_cancel`` is asked every
        ``CANCEL_CHECK`` seconds; when it says so, the daemon job is cancelled and
        ``JobCancelled`` raised. Any other way out before the job ends (an exception
        from ``on_progress``, a timeout, Ctrl-C) cancels the daemon job too, so no
        generation runs on that nobody waits for.
        """
        job = self.submit(request, idempotency_key=idempotency_key, client_name=client_name)
        deadline = time.monotonic() + timeout
        try:
            if on_progress:
                on_progress(job)
            for job in self._updates(job, should_cancel, poll_interval, timeout, deadline):
                if on_progress:
                    on_progress(job)
        except BaseException:
            if job["state"] not in TERMINAL:
                self._cancel_quietly(job["id"])
            raise
        if job["state"] == "succeeded":
            return job
        if job["state"] == "cancelled":
            raise JobCancelled("The Arting job was cancelled on the daemon (from its web page "
                               "or another client); run it again if you still want it.",
                               code="cancelled")
        error = job.get("error") or {}
        raise JobFailed(f"Arting could not make the image: "
                        f"{error.get('message', 'unknown error')}", code=error.get("code"))

    # --- following a job ------------------------------------------------------------------

    def _updates(self, job: dict, should_cancel: Callable[[], bool] | None,
                 poll_interval: float, timeout: float, deadline: float) -> Iterator[dict]:
        """The job's updates until it ends: over the WebSocket where the daemon has one,
        else (or from where that broke off) by polling."""
        if job["state"] in TERMINAL:
            return
        if self.live:
            try:
                yield from self._live(job["id"], should_cancel, timeout, deadline)
                return
            except _NoLiveChannel:
                pass
        while job["state"] not in TERMINAL:
            self._wait(poll_interval, should_cancel, timeout, deadline)
            job = self._poll(job)
            yield job

    def _live(self, job_id: str, should_cancel: Callable[[], bool] | None, timeout: float,
              deadline: float) -> Iterator[dict]:
        """The job's events over the WebSocket until it ends. ``_NoLiveChannel`` when
        there is no such channel or it broke off (the caller polls then)."""
        url = self.base_url + WS_PATH
        try:
            ws = _WebSocket(url, self._headers(), self.timeout)
        except (OSError, ssl.SSLError, _Refused) as exc:
            raise _NoLiveChannel(str(exc)) from None
        try:
            ws.send({"subscribe": [job_id]})
            while True:
                self._check(should_cancel, timeout, deadline)
                message = ws.receive(CANCEL_CHECK)
                if message is None or message.get("event") == "ready":
                    continue
                if message.get("event") != "job":    # refused: polling says why
                    raise _NoLiveChannel(json.dumps(message)[:200])
                job = message.get("job") or {}
                if job.get("id") == job_id:
                    yield job
                    if job.get("state") in TERMINAL:
                        return
        except (OSError, ValueError, _Refused) as exc:
            raise _NoLiveChannel(str(exc)) from None
        finally:
            ws.close()

    # --- plumbing ------------------------------------------------------------------------

    def _check(self, should_cancel: Callable[[], bool] | None, timeout: float,
               deadline: float) -> None:
        """Raise if the caller cancelled or the job is past its time."""
        if should_cancel and should_cancel():
            raise JobCancelled("Cancelled; the Arting job was stopped.", code="cancelled")
        if time.monotonic() > deadline:
            raise DaemonError(f"The Arting job took longer than {timeout:g} s and was "
                              "cancelled; try again or raise the timeout.", code="timeout")

    def _wait(self, seconds: float, should_cancel: Callable[[], bool] | None,
              timeout: float, deadline: float) -> None:
        """Sleep until the next poll, in short slices so a cancel is seen at once."""
        until = time.monotonic() + seconds
        while True:
            self._check(should_cancel, timeout, deadline)
            now = time.monotonic()
            if now >= until:
                return
            time.sleep(min(CANCEL_CHECK, until - now))

    def _poll(self, job: dict) -> dict:
        """The job's current state; rides out a daemon that is briefly away (a restart
        resumes its jobs), but not for longer than ``POLL_GRACE``."""
        give_up = time.monotonic() + POLL_GRACE
        while True:
            try:
                return self.job(job["id"])
            except DaemonUnreachable:
                if time.monotonic() > give_up:
                    raise
                time.sleep(0.5)

    def _cancel_quietly(self, job_id: str) -> None:
        try:
            self.cancel(job_id)
        except DaemonError:
            pass

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "arting-2api-plugin"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _request(self, method: str, path: str, body: Any = None,
                 headers: dict[str, str] | None = None, retries: int = 0) -> Any:
        url = self.base_url + path
        data = None if body is None else json.dumps(body).encode("utf-8")
        all_headers = {**self._headers(), **(headers or {})}
        if data is not None:
            all_headers["Content-Type"] = "application/json"
        for attempt in range(retries + 1):
            req = urllib.request.Request(url, data=data, method=method, headers=all_headers)
            try:
                with self._open(req, url) as resp:
                    raw = self._read(resp)
                break
            except DaemonUnreachable:
                if attempt == retries:
                    raise
                time.sleep(0.5 * (attempt + 1))
        try:
            return json.loads(raw.decode("utf-8") or "null")
        except (ValueError, UnicodeDecodeError):
            raise self._not_ours(200, "OK") from None

    def _read(self, resp: http.client.HTTPResponse) -> bytes:
        try:
            return resp.read()
        except (http.client.HTTPException, OSError):
            raise self._broken() from None

    def _lines(self, resp: http.client.HTTPResponse) -> Iterator[bytes]:
        try:
            yield from resp
        except (http.client.HTTPException, OSError):
            raise self._broken() from None

    def _broken(self) -> DaemonUnreachable:
        return DaemonUnreachable(f"The connection to the Arting daemon at {self.base_url} "
                                 "broke off mid-answer; try again.")

    def _open(self, req: urllib.request.Request, url: str, timeout: float | None = None):
        try:
            return urllib.request.urlopen(req, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as exc:
            raise self._http_error(exc) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError) or "timed out" in str(reason):
                raise DaemonUnreachable(
                    f"The Arting daemon at {self.base_url} did not answer within "
                    f"{timeout or self.timeout:g} s; check that it is running and not "
                    "stuck.") from None
            raise DaemonUnreachable(
                f"Arting daemon not reachable at {self.base_url} — start it with "
                "`arting-daemon` (or set ARTING_DAEMON_URL to where it runs).") from None

    def _http_error(self, exc: urllib.error.HTTPError) -> DaemonError:
        try:
            error = json.loads(exc.read().decode("utf-8"))["error"]
            message, code = str(error["message"]), error.get("code")
        except (ValueError, KeyError, TypeError, UnicodeDecodeError, OSError,
                http.client.HTTPException):
            return self._not_ours(exc.code, exc.reason)
        status = exc.code
        if status == 401:
            return DaemonError(f"The Arting daemon at {self.base_url} refused the API key; "
                               "set ARTING_API_KEY to one of its keys.", status=status, code=code)
        if status == 404 and message.startswith("Unknown route"):
            return self._not_ours(status, exc.reason)
        if status == 429:
            wait = exc.headers.get("Retry-After")
            later = f" (try again in {wait} s)" if wait else ""
            return DaemonError(f"The Arting daemon is busy{later}: {message}",
                               status=status, code=code)
        if status >= 500:
            return DaemonError(f"The Arting daemon could not do it: {message}",
                               status=status, code=code)
        return DaemonError(f"The Arting daemon refused the request: {message}",
                           status=status, code=code)

    def _not_ours(self, status: int, reason: str) -> DaemonError:
        return DaemonError(f"{self.base_url} answered HTTP {status} {reason} but is not an "
                           "arting-2api daemon; check the daemon URL.", status=status)


# --- a minimal WebSocket client (RFC 6455) -------------------------------------------------

class _Refused(Exception):
    """The WebSocket handshake failed, or the server closed the connection."""


class _NoLiveChannel(Exception):
    """No WebSocket to follow the job on (or it broke off): poll instead."""


class _WebSocket:
    """JSON text messages over one client WebSocket: the handshake, masked frames out,
    fragmented frames in, pings answered. Blocking, with a timeout per read."""

    GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    MAX_MESSAGE = 64 << 20

    def __init__(self, url: str, headers: dict[str, str], timeout: float) -> None:
        parts = urllib.parse.urlsplit(url)
        secure = parts.scheme == "https"
        host = parts.hostname or ""
        sock = socket.create_connection((host, parts.port or (443 if secure else 80)),
                                        timeout=timeout)
        if secure:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        self.sock = sock
        self._buffer = bytearray()
        self._parts: list[bytes] = []
        try:
            self._handshake(parts, headers, timeout)
        except BaseException:
            self.close()
            raise

    def _handshake(self, parts: urllib.parse.SplitResult, headers: dict[str, str],
                   timeout: float) -> None:
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        lines = [f"GET {parts.path or '/'} HTTP/1.1", f"Host: {parts.netloc}",
                 "Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
                 "Sec-WebSocket-Version: 13"]
        lines += [f"{name}: {value}" for name, value in headers.items() if value]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        give_up = time.monotonic() + timeout
        while b"\r\n\r\n" not in self._buffer:
            if len(self._buffer) > 16384 or not self._fill(give_up):
                raise _Refused("no WebSocket handshake answer")
        head, _, rest = bytes(self._buffer).partition(b"\r\n\r\n")
        self._buffer = bytearray(rest)
        status, *fields = head.decode("latin-1").split("\r\n")
        found = {name.strip().lower(): value.strip()
                 for name, _, value in (f.partition(":") for f in fields)}
        accept = base64.b64encode(hashlib.sha1((key + self.GUID).encode()).digest()).decode()
        if status.split(" ")[1:2] != ["101"] or found.get("sec-websocket-accept") != accept:
            raise _Refused(f"no WebSocket here ({status})")

    def send(self, message: Any) -> None:
        self._frame(0x1, json.dumps(message).encode("utf-8"))

    def receive(self, wait: float) -> Any:
        """The next text message, parsed as JSON; None if none came within ``wait``."""
        give_up = time.monotonic() + wait
        while True:
            frame = self._take_frame()
            if frame is None:
                if not self._fill(give_up):
                    return None
                continue
            fin, opcode, payload = frame
            if opcode == 0x9:                       # ping: answer at once
                self._frame(0xA, payload)
            elif opcode == 0x8:
                raise _Refused("the daemon closed the WebSocket")
            elif opcode in (0x0, 0x1):
                self._parts.append(payload)
                if sum(len(p) for p in self._parts) > self.MAX_MESSAGE:
                    raise _Refused("a WebSocket message too large")
                if fin:
                    text, self._parts = b"".join(self._parts), []
                    return json.loads(text.decode("utf-8"))

    def close(self) -> None:
        try:
            self._frame(0x8, (1000).to_bytes(2, "big"))
        except OSError:
            pass
        self.sock.close()

    def _fill(self, give_up: float) -> bool:
        """Read what has arrived, waiting until ``give_up`` at most; False on timeout."""
        left = give_up - time.monotonic()
        if left <= 0:
            return False
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError):
            return False
        if not data:
            raise _Refused("the daemon closed the connection")
        self._buffer += data
        return True

    def _take_frame(self) -> tuple[bool, int, bytes] | None:
        """One whole frame from the buffer (fin, opcode, payload), or None if it has
        not all arrived yet."""
        buf = self._buffer
        if len(buf) < 2:
            return None
        fin, opcode = bool(buf[0] & 0x80), buf[0] & 0x0F
        length, at = buf[1] & 0x7F, 2
        if length >= 126:
            size = 2 if length == 126 else 8
            if len(buf) < 2 + size:
                return None
            length, at = int.from_bytes(buf[2:2 + size], "big"), 2 + size
        if length > self.MAX_MESSAGE:
            raise _Refused("a WebSocket frame too large")
        mask = bytes(buf[at:at + 4]) if buf[1] & 0x80 else b""
        at += len(mask)
        if len(buf) < at + length:
            return None
        payload = bytes(buf[at:at + length])
        del buf[:at + length]
        return fin, opcode, _xor(payload, mask) if mask else payload

    def _frame(self, opcode: int, payload: bytes) -> None:
        """Send one final, masked frame (clients always mask)."""
        head = bytearray([0x80 | opcode])
        n = len(payload)
        if n < 126:
            head.append(0x80 | n)
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
        else:
            head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
        mask = os.urandom(4)
        self.sock.sendall(bytes(head) + mask + _xor(payload, mask))


def _xor(data: bytes, mask: bytes) -> bytes:
    """The payload masked (or unmasked) with a 4-byte key."""
    n = len(data)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(data, "big") ^ key).to_bytes(n, "big")
