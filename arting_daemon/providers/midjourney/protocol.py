"""The midjourney-proxy protocol: what is sent, and what its answers mean.

Everything here is a plain function of the request or the answer, so the provider
(``provider.py``) only sends, waits and keeps state.

* A generation is ``POST /mj/submit/imagine`` with the prompt: the request's size
  becomes ``--ar``, its negative prompt ``--no``, its seed ``--seed``, the model its bot
  (``botType``) and version flag, unless the prompt carries them already.
* A submit answers ``{code, description, result, properties}`` with HTTP 200 whatever
  happened: ``submitted`` reads it into a task id (codes 1, 22 queued, 21 existing) or
  the error it means (23 and 9 a full queue, 24 a banned prompt, 4 an invalid request,
  3 a missing task or account).
* ``GET /mj/task/{id}/fetch`` answers the task: ``status`` and ``progress`` ("45%")
  become the job's state and progress; ``failReason`` is quoted, masked.
* ``GET /mj/task/queue`` (novicezk's proxy) lists its unfinished tasks in submit order:
  ``queue_place`` reads a waiting task's place from it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from ... import logs
from ...errors import (ArtingError, BadUpstreamResponse, ContentRefused, JobFailed,
                       UpstreamInvalid, UpstreamRateLimited, UpstreamRejected,
                       UpstreamServerError)
from ...generation import Generation
from .settings import MidjourneySettings

#: The proxies' return codes (``ReturnCode``).
SUCCESS, NOT_FOUND, VALIDATION_ERROR, FAILURE = 1, 3, 4, 9
EXISTED, IN_QUEUE, QUEUE_REJECTED, BANNED_PROMPT = 21, 22, 23, 24
#: Task statuses while it waits, and when it ended.
WAITING = ("", "NOT_START", "SUBMITTED", "MODAL")
#: Of those, the statuses of a task still in the proxy's own queue (new-api's fresh
#: task has an empty one); ``SUBMITTED`` has been handed to Midjourney.
QUEUED = ("", "NOT_START")
RUNNING, DONE, FAILED, CANCELLED = "IN_PROGRESS", "SUCCESS", "FAILURE", "CANCEL"
BOTS = {"midjourney": "MID_JOURNEY", "niji": "NIJI_JOURNEY"}
#: Words in a failure that mean Midjourney refused the prompt or picture.
REFUSALS = ("banned", "moderation", "blocked", "sensitive", "not allowed", "敏感", "违规")
#: How far apart two aspect ratios may be before ``--ar`` names the exact one.
_NEAR = 0.02


def aspect_ratio(width: int, height: int) -> str:
    """``--ar`` for a size: the exact ratio where it is small (512×768 → 2:3), else the
    simplest ratio within 2 % of it (1352×768 → 7:4)."""
    exact = Fraction(width, height)
    if exact.numerator <= 21 and exact.denominator <= 21:
        return f"{exact.numerator}:{exact.denominator}"
    target = math.log(width / height)
    best = min(((p, q) for p in range(1, 22) for q in range(1, 22)),
               key=lambda pq: (abs(math.log(pq[0] / pq[1]) - target), pq[0] + pq[1]))
    if abs(math.log(best[0] / best[1]) - target) > _NEAR:
        approx = exact.limit_denominator(100)
        return f"{approx.numerator}:{approx.denominator}"
    ratio = Fraction(*best)
    return f"{ratio.numerator}:{ratio.denominator}"


def carries(prompt: str, *names: str) -> bool:
    """Whether the prompt has one of the parameters ``names`` (``--ar``, ``--no`` ...)."""
    return any(re.search(rf"(?<!\S){re.escape(name)}(?=\s|$)", prompt, re.IGNORECASE)
               for name in names)


def imagine_prompt(gen: Generation, options: MidjourneySettings) -> str:
    """The prompt as Midjourney takes it: the request's own, then each parameter the
    request and the settings call for, where the prompt does not set it itself."""
    prompt = " ".join(gen.prompt.split())
    added: list[str] = []
    if not gen.auto_size and not carries(prompt, "--ar", "--aspect"):
        added.append(f"--ar {aspect_ratio(gen.width, gen.height)}")
    negative = " ".join(gen.negative_prompt.split())
    if negative and not carries(prompt, "--no"):
        added.append(f"--no {negative}")
    if not carries(prompt, "--seed", "--sameseed"):
        added.append(f"--seed {gen.seed}")
    if is_niji(gen.model):
        if not carries(prompt, "--niji"):
            added.append("--niji" + (f" {options.niji_version}" if options.niji_version else ""))
    elif options.version and not carries(prompt, "--v", "--version", "--niji"):
        added.append(f"--v {options.version}")
    for flag in re.findall(r"--\S+(?:\s+(?!--)\S+)*", options.flags):
        if not carries(prompt, flag.split()[0]):
            added.append(flag)
    return " ".join([prompt, *added])


def is_niji(model: str) -> bool:
    """``niji`` (and ids that name it, such as ``niji-6``) is Niji Journey's bot."""
    return "niji" in model.lower()


def seed_of(prompt: str, fallback: int) -> int:
    """The ``--seed`` a prompt carries (the one its grid was made with), else ``fallback``."""
    found = re.search(r"(?<!\S)--seed\s+(\d+)", prompt)
    return int(found[1]) if found else fallback


def imagine_body(gen: Generation, options: MidjourneySettings,
                 image: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"prompt": imagine_prompt(gen, options),
                            "botType": BOTS["niji" if is_niji(gen.model) else "midjourney"]}
    if image is not None:
        body["base64Array"] = [image]
    return body


# --- answers --------------------------------------------------------------------------

@dataclass(frozen=True)
class Submitted:
    """A submit the proxy took: the task to follow, and its place in the proxy's queue
    (code 22) when it waits there."""

    task: str
    queued: int | None = None
    #: Code 21 from a plus proxy: the task waits for its modal to be confirmed.
    modal: bool = False


def said(text: Any, limit: int = 300) -> str:
    """The proxy's own words, quoted as they may be shown: secrets masked, shortened."""
    if not isinstance(text, str) or not text.strip():
        return ""
    return logs.redact(" ".join(text.split()))[:limit]


def submitted(label: str, answer: Any) -> Submitted:
    """The task a submit answer names, or the error it means."""
    code = answer.get("code") if isinstance(answer, dict) else None
    if isinstance(code, str) and code.strip().isdigit():     # a relay that quotes it
        code = int(code)
    if not isinstance(code, int) or isinstance(code, bool):
        raise BadUpstreamResponse(f"{label}'s submit answer has no `code`.", retryable=False)
    task = answer.get("result")
    words = said(answer.get("description")) or f"code {code}"
    found = answer.get("properties")
    props: dict = found if isinstance(found, dict) else {}
    has_task = isinstance(task, (str, int)) and str(task).strip() != ""
    if code in (SUCCESS, IN_QUEUE) and has_task:
        return Submitted(str(task), queued=_queue_place(code, props, words))
    if code == EXISTED and has_task:
        return Submitted(str(task), modal=bool(props.get("remix")) or "confirm" in words.lower())
    if code == BANNED_PROMPT:
        word = said(props.get("bannedWord"), 60)
        raise ContentRefused(f"{label} refused the prompt ({words}"
                             + (f"; banned word: {word!r}" if word else "") + ").",
                             upstream_code=code)
    if code == QUEUE_REJECTED or (code == FAILURE and _full(words)):
        raise UpstreamRateLimited(f"{label}'s queue is full ({words}); try again later.",
                                  retry_after=30.0)
    if code == VALIDATION_ERROR:
        raise UpstreamInvalid(f"{label} found the request invalid: {words}.", upstream_code=code)
    if code == FAILURE:
        raise UpstreamServerError(f"{label} failed to submit the task: {words}.")
    if code == NOT_FOUND:
        raise UpstreamRejected(f"{label} answered code 3: {words} (no task to act on, or no "
                               "Midjourney account free there).", upstream_code=code)
    raise UpstreamRejected(f"{label} did not take the task (code {code}: {words}).",
                           upstream_code=code)


def _queue_place(code: int, props: dict, words: str) -> int | None:
    """The task's place in the proxy's queue: one after the tasks ahead of it
    (``numberOfQueues``, or the number in "排队中，前面还有3个任务")."""
    if code != IN_QUEUE:
        return None
    ahead = props.get("numberOfQueues")
    if not isinstance(ahead, int) or isinstance(ahead, bool):
        found = re.search(r"\d+", words)
        ahead = int(found[0]) if found else 0
    return max(0, ahead) + 1


def _full(words: str) -> bool:
    return any(w in words.lower() for w in ("queue", "队列", "排队"))


@dataclass(frozen=True)
class TaskView:
    """A fetched task as the job sees it: still going (with progress 0..1 if known),
    or done with its image."""

    done: bool
    progress: float | None = None
    #: The grid (or the upscale): a URL, or a path on the proxy (a gateway's own).
    image_url: str | None = None
    prompt: str = ""
    buttons: tuple[dict, ...] = ()
    message_hash: str | None = None
    waiting: bool = False
    #: Still in the proxy's own queue (``NOT_START``), not yet handed to Midjourney.
    queued: bool = False


def task_view(label: str, task_id: str, task: Any) -> TaskView:
    """A fetch answer, or the error it means (``None``/empty: the proxy does not know
    the task, which ``follow`` judges)."""
    if not isinstance(task, dict):
        raise BadUpstreamResponse(f"{label}'s answer for task {task_id} is not a task.")
    status = str(task.get("status") or "").upper()
    if status == DONE:
        url = task.get("imageUrl")
        if not isinstance(url, str) or not url.startswith(("http://", "https://", "/")):
            raise BadUpstreamResponse(f"{label} finished task {task_id} without an image URL.",
                                      retryable=False)
        found = task.get("properties")
        props: dict = found if isinstance(found, dict) else {}
        final = props.get("finalPrompt") or task.get("promptEn") or task.get("prompt") or ""
        buttons = tuple(b for b in task.get("buttons") or () if isinstance(b, dict))
        return TaskView(True, 1.0, url, str(final), buttons,
                        str(props["messageHash"]) if props.get("messageHash") else None)
    if status == FAILED:
        raise failure(label, task_id, task.get("failReason"))
    if status == CANCELLED:
        raise JobFailed(f"{label} cancelled task {task_id}.")
    return TaskView(False, progress_of(task.get("progress")), waiting=status in WAITING,
                    queued=status in QUEUED)


def queue_place(label: str, task_id: str, queue: Any) -> int | None:
    """The task's place in the proxy's queue from ``GET /mj/task/queue``: one after the
    tasks still waiting ahead of it for the same Discord account, as a code 22 counts
    them; None when it waits there no more. The list holds the tasks running too, in
    submit order (novicezk's ``TaskController.queue``)."""
    if not isinstance(queue, list):
        raise BadUpstreamResponse(f"{label}'s task queue is not a list.", retryable=False)
    tasks = [t for t in queue if isinstance(t, dict)]
    tasks.sort(key=_submit_time)
    mine = next((i for i, t in enumerate(tasks) if str(t.get("id")) == task_id), None)
    if mine is None or _status(tasks[mine]) not in QUEUED:
        return None
    account = _account(tasks[mine])
    return 1 + sum(1 for t in tasks[:mine] if _status(t) in QUEUED
                   and (account is None or _account(t) in (account, None)))


def _submit_time(task: dict) -> int:
    found = task.get("submitTime")
    return found if isinstance(found, int) else 0


def _status(task: dict) -> str:
    return str(task.get("status") or "").upper()


def _account(task: dict) -> str | None:
    props = task.get("properties")
    found = props.get("discordInstanceId") if isinstance(props, dict) else None
    return str(found) if found else None


def failure(label: str, task_id: str, reason: Any) -> ArtingError:
    words = said(reason)
    if words and any(w in words.lower() for w in REFUSALS):
        return ContentRefused(f"{label} refused task {task_id}: {words!r}.")
    return JobFailed(f"{label} failed task {task_id}"
                     + (f": {words!r}." if words else " (it gave no reason)."))


def progress_of(value: Any) -> float | None:
    """``"45%"`` → 0.45; nothing readable → None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    else:
        found = re.search(r"\d+(?:\.\d+)?", str(value or ""))
        if not found:
            return None
        number = float(found[0])
    return min(1.0, max(0.0, number / 100))


def upscale_button(view: TaskView, index: int) -> str:
    """The ``customId`` of ``U<index>`` on a finished grid: from its buttons, else made
    the way the proxies make it from the job's hash."""
    for button in view.buttons:
        custom = str(button.get("customId") or "")
        if re.fullmatch(rf"MJ::JOB::upsample::{index}::\S+", custom):
            return custom
    if view.message_hash:
        return f"MJ::JOB::upsample::{index}::{view.message_hash}"
    raise BadUpstreamResponse("The grid has no U button and no message hash to make one.",
                              retryable=False)
