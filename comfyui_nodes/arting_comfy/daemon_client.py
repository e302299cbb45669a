"""A small client of the arting-2api daemon's job API, standard library only.

This one file serves both plugins (the ComfyUI node pack and the SD-WebUI
extension), which run inside host applications whose Python environments we do not
control: so no third-party imports, and Python 3.10 syntax.

    client = DaemonClient()                      # ARTING_DAEMON_URL or 127.0.0.1:8090
    job = client.run({"prompt": "a lighthouse"}, on_progress=print)
    pngs = [client.download(img["url"]) for img in job["images"]]

Every error is a ``DaemonError`` whose message is one sentence a user can act on.
"""

from __future__ import annotations

import http.client
import json
import os
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
                 timeout: float = 10.0) -> None:
        self.base_url = resolve_url(base_url)
        if not self.base_url.startswith(("http://", "https://")):
            raise DaemonError(f"The daemon URL {self.base_url} must start with http:// or "
                              f"https://, like {DEFAULT_URL}.")
        self.api_key = api_key if api_key is not None else os.environ.get("ARTING_API_KEY")
        self.timeout = timeout

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

        ``on_progress`` gets every job update. ``should_cancel`` is asked every
        ``CANCEL_CHECK`` seconds; when it says so, the daemon job is cancelled and
        ``JobCancelled`` raised. Any other way out before the job ends (an exception
        from ``on_progress``, a timeout, Ctrl-C) cancels the daemon job too, so no
        generation runs on that nobody waits for.
        """
        job = self.submit(request, idempotency_key=idempotency_key, client_name=client_name)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if on_progress:
                    on_progress(job)
                if job["state"] in TERMINAL:
                    break
                self._wait(poll_interval, should_cancel, timeout, deadline)
                job = self._poll(job)
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

    # --- plumbing ------------------------------------------------------------------------

    def _wait(self, seconds: float, should_cancel: Callable[[], bool] | None,
              timeout: float, deadline: float) -> None:
        """Sleep until the next poll, in short slices so a cancel is seen at once."""
        until = time.monotonic() + seconds
        while True:
            if should_cancel and should_cancel():
                raise JobCancelled("Cancelled; the Arting job was stopped.", code="cancelled")
            now = time.monotonic()
            if now > deadline:
                raise DaemonError(f"The Arting job took longer than {timeout:g} s and was "
                                  "cancelled; try again or raise the timeout.", code="timeout")
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
