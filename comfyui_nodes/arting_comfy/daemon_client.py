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

import json
import os
import time
import urllib.error
import urllib.request
import uuid
from typing import Any, Callable, Iterator

DEFAULT_URL = "http://127.0.0.1:8090"
TERMINAL = ("succeeded", "failed", "cancelled")


class DaemonError(Exception):
    """Something went wrong; ``str(err)`` tells the user what to do."""


class DaemonUnreachable(DaemonError):
    pass


class JobFailed(DaemonError):
    pass


class JobCancelled(DaemonError):
    pass


def resolve_url(explicit: str | None = None) -> str:
    """Daemon URL: an explicit value, else ARTING_DAEMON_URL, else the default."""
    url = (explicit or "").strip() or os.environ.get("ARTING_DAEMON_URL", "").strip()
    return (url or DEFAULT_URL).rstrip("/")


class DaemonClient:
    def __init__(self, base_url: str | None = None, api_key: str | None = None,
                 timeout: float = 10.0) -> None:
        self.base_url = resolve_url(base_url)
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
        so a submit whose answer got lost can be repeated without a second generation."""
        headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex,
                   "X-Arting-Client": client_name}
        return self._request("POST", "/arting/v1/jobs", request, headers=headers, retries=2)

    def job(self, job_id: str) -> dict:
        return self._request("GET", f"/arting/v1/jobs/{job_id}")

    def cancel(self, job_id: str) -> dict:
        return self._request("DELETE", f"/arting/v1/jobs/{job_id}")

    def download(self, url: str) -> bytes:
        if url.startswith("/"):
            url = self.base_url + url
        return self._open(urllib.request.Request(url, headers=self._headers()), url).read()

    def events(self, job_id: str) -> Iterator[dict]:
        """The job's server-sent events, each the job as a dict, until it ends."""
        url = f"{self.base_url}/arting/v1/jobs/{job_id}/events"
        req = urllib.request.Request(url, headers={**self._headers(),
                                                   "Accept": "text/event-stream"})
        with self._open(req, url, timeout=max(self.timeout, 30.0)) as resp:
            data: list[str] = []
            for raw in resp:
                line = raw.decode("utf-8").rstrip("\r\n")
                if line.startswith("data:"):
                    data.append(line[5:].lstrip())
                elif not line and data:
                    job = json.loads("\n".join(data))
                    data = []
                    yield job
                    if job.get("state") in TERMINAL:
                        return

    def run(self, request: dict, *, on_progress: Callable[[dict], None] | None = None,
            should_cancel: Callable[[], bool] | None = None, poll_interval: float = 0.5,
            timeout: float = 900.0, client_name: str = "plugin") -> dict:
        """Submit, follow the job until it ends, and return it (succeeded).

        ``should_cancel`` is asked between short polls; when it says so, the daemon job
        is cancelled and ``JobCancelled`` raised. ``on_progress`` gets every job update.
        """
        job = self.submit(request, client_name=client_name)
        deadline = time.monotonic() + timeout
        while True:
            if on_progress:
                on_progress(job)
            if job["state"] in TERMINAL:
                break
            if should_cancel and should_cancel():
                self._cancel_quietly(job["id"])
                raise JobCancelled("Cancelled; the Arting job was stopped.")
            if time.monotonic() > deadline:
                self._cancel_quietly(job["id"])
                raise DaemonError(f"The Arting job took longer than {timeout:g} s and was "
                                  "cancelled; try again or raise the timeout.")
            time.sleep(poll_interval)
            job = self.job(job["id"])
        if job["state"] == "succeeded":
            return job
        if job["state"] == "cancelled":
            raise JobCancelled("The Arting job was cancelled.")
        error = job.get("error") or {}
        raise JobFailed(f"Arting could not make the image: {error.get('message', 'unknown error')}")

    # --- plumbing ------------------------------------------------------------------------

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
                    return json.loads(resp.read().decode("utf-8") or "null")
            except DaemonUnreachable:
                if attempt == retries:
                    raise
                time.sleep(0.5 * (attempt + 1))
        raise AssertionError("unreachable")

    def _open(self, req: urllib.request.Request, url: str, timeout: float | None = None):
        try:
            return urllib.request.urlopen(req, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as exc:
            raise self._http_error(exc) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError) or "timed out" in str(reason):
                raise DaemonUnreachable(
                    f"The Arting daemon at {self.base_url} did not answer within "
                    f"{timeout or self.timeout:g} s; is it overloaded?") from None
            raise DaemonUnreachable(
                f"Arting daemon not reachable at {self.base_url} — start it with "
                "`arting-daemon` (or set ARTING_DAEMON_URL to where it runs).") from None

    def _http_error(self, exc: urllib.error.HTTPError) -> DaemonError:
        try:
            message = json.loads(exc.read().decode("utf-8"))["error"]["message"]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            message = exc.reason
        if exc.code == 401:
            return DaemonError(f"The Arting daemon at {self.base_url} refused the API key; "
                               "set ARTING_API_KEY to one of its keys.")
        if exc.code == 404 and "Unknown route" in str(message):
            return DaemonError(f"{self.base_url} is not an arting-2api daemon (no job API).")
        return DaemonError(f"The Arting daemon refused the request: {message}")
