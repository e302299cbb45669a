"""A check's record as an emulator: ``--sandbox --replay DIR``.

``arting-daemon check --record DIR`` writes what the live Arting answered
(``recording.py``). Here that record becomes sandbox switches, so the emulator
answers the way the live service did:

* shapes: the recorded create, pending, done and failed answers, the refusal of an
  unknown request id and of a token are sent back as they were (``config.answers``),
  with only the request id and the image URLs filled in; the status literals with them;
* timings: the recorded generation time, and the recorded latency of creates and polls
  (``slow`` faults);
* the rest: where the images came from (a host this machine can serve under, such as
  ``localhost``), the images themselves, whether image-to-image was there, and a
  Cloudflare page that stood in the way.

A user's record thus becomes a test case: the daemon can be run against it, and so can
the check again.
"""

from __future__ import annotations

import ipaddress
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .. import catalog
from ..recording import RecordedExchange, RecordError, read_record
from .models import Fault, RecordedAnswer, SandboxConfig
from .server import Sandbox

__all__ = ["RecordError", "Replay", "load_replay", "start_sandbox"]

#: Latencies below this are this machine's, not Arting's: not replayed.
MIN_DELAY = 0.05

_CLOUDFLARE_FAULTS = {"challenge": "cf_challenge", "firewall": "cf_1020",
                      "rate_limit": "cf_rate_limit", "origin_error": "cf_5xx"}


@dataclass
class Replay:
    directory: Path
    config: dict = field(default_factory=dict)       # SandboxConfig values
    faults: list[Fault] = field(default_factory=list)
    image_host: str | None = None                     # where the recorded images came from

    def apply(self, sandbox: Sandbox) -> None:
        """After ``sandbox.start()``: serve images under the recorded host if this machine
        can (``localhost``, or the sandbox's own address), and arm the faults."""
        if self.image_host and sandbox.url and _servable(self.image_host, sandbox.url):
            port = urlsplit(sandbox.url).port
            host = f"[{self.image_host}]" if ":" in self.image_host else self.image_host
            sandbox.configure(public_url=f"http://{host}:{port}")
        for fault in self.faults:
            sandbox.add_fault(**fault.model_dump(exclude_none=True))


def load_replay(directory: Path) -> Replay:
    """Read a record into sandbox switches; ``RecordError`` says what is wrong with it."""
    _, exchanges = read_record(directory)
    replay = Replay(directory)
    config = replay.config
    api = [e for e in exchanges if e.via == "aiohttp" and e.method == "POST"]

    answers: dict[str, RecordedAnswer] = {}
    for kind, route, outcome in [("create", "text-to-image/create", "created"),
                                 ("pending", "text-to-image/get", "pending"),
                                 ("done", "text-to-image/get", "done"),
                                 ("failed", "text-to-image/get", "failed"),
                                 ("not_found", "text-to-image/get", "accepted"),
                                 ("token_refused", "text-to-image/get", "refused")]:
        found = _first(api, route, outcome)
        if found is not None and isinstance(found.body, dict):
            answers[kind] = RecordedAnswer(status=found.status or 200, body=found.body)
    config["answers"] = answers
    for kind in ("pending", "done", "failed"):
        data = answers[kind].body.get("data") if kind in answers else None
        if isinstance(data, dict) and isinstance(data.get("status"), (str, int)):
            config[f"{kind}_status"] = data["status"]
    if "not_found" in answers:
        config["errors_as_http"] = answers["not_found"].status >= 400
    if "token_refused" in answers:
        config["auth_error_http"] = answers["token_refused"].status >= 400

    _timings(replay, api)
    _images(replay, exchanges, answers.get("done"))
    _models(replay, api)
    for e in api:
        if "/image-to-image/" in e.path and e.outcome in ("missing", "present", "created"):
            config["img2img_enabled"] = e.outcome != "missing"
    _cloudflare(replay, exchanges)
    SandboxConfig.model_validate({**SandboxConfig().model_dump(), **config})  # fail early
    return replay


def _first(exchanges: list[RecordedExchange], route: str,
           outcome: str) -> RecordedExchange | None:
    return next((e for e in exchanges if e.path.endswith(route) and e.outcome == outcome), None)


def _timings(replay: Replay, api: list[RecordedExchange]) -> None:
    """The generation time, and create and poll latencies as ``slow`` faults."""
    create = _first(api, "text-to-image/create", "created")
    done = _first(api, "text-to-image/get", "done")
    if create is not None and done is not None:
        created = create.at + create.elapsed
        pending = [e.at for e in api if e.path.endswith("text-to-image/get")
                   and e.outcome == "pending" and created <= e.at < done.at]
        # Done somewhere between the last poll that found it pending and the one that
        # found it done: the middle is the best guess.
        finished = (pending[-1] + done.at) / 2 if pending else done.at
        replay.config["generation_time"] = round(max(0.0, finished - created), 3)
    for route, suffix in (("create", "text-to-image/create"), ("get", "text-to-image/get")):
        took = [e.elapsed for e in api if e.path.endswith(suffix) and e.status is not None]
        if took and statistics.median(took) >= MIN_DELAY:
            replay.faults.append(Fault(kind="slow", route=route,
                                       delay=round(statistics.median(took), 3)))


def _images(replay: Replay, exchanges: list[RecordedExchange],
            done: RecordedAnswer | None) -> None:
    data = done.body.get("data") if done is not None and isinstance(done.body, dict) else None
    urls = data.get("output") if isinstance(data, dict) else None
    hosts = [urlsplit(u).hostname for u in urls or [] if isinstance(u, str)]
    replay.image_host = next((h for h in hosts if h), None)
    files = [str(e.file) for e in exchanges
             if e.method == "GET" and e.file is not None and e.file.is_file()]
    if files:
        replay.config["image_files"] = files


def _models(replay: Replay, api: list[RecordedExchange]) -> None:
    """Models Arting accepted in the record are accepted by the replay too."""
    models = {e.request.get("model_id") for e in api
              if e.path.endswith("/create") and e.outcome == "created"}
    extra = sorted(m for m in models if isinstance(m, str) and m and m not in catalog.MODELS)
    if extra:
        replay.config["allowed_models"] = [*catalog.MODELS, *extra]


def _cloudflare(replay: Replay, exchanges: list[RecordedExchange]) -> None:
    """A Cloudflare page on the first exchange comes back: once when the run got through
    it afterwards (cloudscraper, then, passes it here too), else on every request."""
    api = [e for e in exchanges if e.via == "aiohttp" and e.status is not None]
    if not api or not api[0].outcome.startswith("cloudflare:"):
        return
    kind = api[0].outcome.split(":", 1)[1]
    passed = any(not e.outcome.startswith("cloudflare:") for e in api[1:])
    if kind in _CLOUDFLARE_FAULTS:
        replay.faults.append(Fault(kind=_CLOUDFLARE_FAULTS[kind], route="*",
                                   count=1 if passed else None,
                                   status=api[0].status if kind == "origin_error" else None))


def _servable(host: str, sandbox_url: str) -> bool:
    """Can the sandbox hand out image URLs on ``host``: it is ``localhost``, or the very
    address the sandbox listens on. Other names are not looked up (no network)."""
    own = urlsplit(sandbox_url).hostname or ""
    if host == "localhost" or host == own:
        return True
    try:
        return ipaddress.ip_address(host) == ipaddress.ip_address(own)
    except ValueError:
        return False


async def start_sandbox(generation_time: float, replay_dir: Path | None = None,
                        host: str = "127.0.0.1", port: int = 0) -> Sandbox:
    """The emulator the daemon (or the check) runs with ``--sandbox``: plain, or replaying
    a record."""
    replay = load_replay(replay_dir) if replay_dir is not None else None
    sandbox = Sandbox(**{"generation_time": generation_time, **(replay.config if replay else {})})
    await sandbox.start(host, port)
    if replay is not None:
        replay.apply(sandbox)
    return sandbox
