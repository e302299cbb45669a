"""Chat front ends' own tasks: the requests they send in the background, to the same
model, besides the user's message — a title for the chat, tags, follow-up suggestions, a
summary of the history. Here every chat request makes pictures, so each of those would
be an image job the user never sees (four times the credits per message with Open
WebUI). They are recognised by the prompts the front ends actually send, and answered
with a short text made here, without a generation.

Recognised (their default prompts):

* **Open WebUI**: a user message beginning ``### Task:`` around a ``<chat_history>``;
  the answer is the JSON object its ``### Output:`` asks for (``title``, ``tags``,
  ``follow_ups``, ``queries``, autocomplete's ``text``, an image ``prompt``).
* **NextChat**: the topic prompt as the last user message, the memory summary as the
  last system message (English and Chinese).
* **LobeChat**: its system agents' system prompts — topic title (current and older
  Chinese wording), history summary, topic summary, follow-up chips, tags, emoji, and the
  title of an image generation topic.
* **SillyTavern**: the Summarize extension's prompt, the Expressions classifier.

A title is the first words of the conversation's first prompt (LoRA tags left out).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: A title is at most this many words (or characters, for text without spaces).
TITLE_WORDS, TITLE_CHARS = 6, 40
FALLBACK_TITLE = "Image"


@dataclass(frozen=True)
class Task:
    """A front end's background task: who sends it, what it is, and the answer."""

    client: str
    kind: str
    answer: str


@dataclass(frozen=True)
class Marker:
    """A phrase of a front end's prompt for ``kind``; ``system``: found in a system
    message (else in the last message)."""

    client: str
    kind: str
    phrase: str
    system: bool = False


MARKERS = (
    Marker("NextChat", "title", "Please generate a four to five word title summarizing our "
           "conversation"),
    Marker("NextChat", "title", "使用四到五个字直接返回这句话的简要主题"),
    Marker("NextChat", "title", "使用四到五個字直接返回這句話的簡要主題"),
    Marker("NextChat", "summary", "Summarize the discussion briefly in 200 words or less"),
    Marker("NextChat", "summary", "简要总结一下对话内容，用作后续的上下文提示"),
    Marker("NextChat", "summary", "簡要總結一下對話內容，用作後續的上下文提示"),
    Marker("LobeChat", "title", "You are a professional conversation summarizer. Generate a "
           "concise title", system=True),
    Marker("LobeChat", "title", "你需要将用户的会话总结为 10 个字以内的标题", system=True),
    Marker("LobeChat", "title", "你需要根据用户提供的 AI", system=True),
    Marker("LobeChat", "summary", "good at extracting key takeaways from conversations",
           system=True),
    Marker("LobeChat", "topic_summary", "Summarize the conversation for future reference.",
           system=True),
    Marker("LobeChat", "chips", "You are a sidecar that extracts 0-4 quick-reply "
           "suggestions", system=True),
    Marker("LobeChat", "tags", "你是一名擅长会话标签总结的助理", system=True),
    Marker("LobeChat", "emoji", "You are an emoji expert who selects", system=True),
    Marker("SillyTavern", "summary", "Summarize the most important facts and events in the "
           "story so far"),
    Marker("SillyTavern", "emotion", "Classify the emotion of the last message"),
)

#: Open WebUI's tasks: the key its ``### Output:`` section asks for → the value here.
OPEN_WEBUI: dict[str, Callable[[list[str]], Any]] = {
    "title": lambda prompts: title(prompts),
    "tags": lambda prompts: ["Image"],
    "follow_ups": lambda prompts: [],
    "queries": lambda prompts: [],
    "text": lambda prompts: "",
    "prompt": lambda prompts: prompts[-1] if prompts else "",
}
OUTPUT_KEY = re.compile(r'\{\s*"(\w+)"\s*:')


def recognise(messages: list[tuple[str, str]]) -> Task | None:
    """The task a chat request is, from its messages as ``(role, text)``; None for a
    message of the user's own."""
    if not messages:
        return None
    role, last = messages[-1]
    if role == "user" and last.lstrip().startswith("### Task:"):
        return _open_webui(last)
    systems = [text for role, text in messages if role in ("system", "developer")]
    for marker in MARKERS:
        if any(marker.phrase in text for text in (systems if marker.system else [last])):
            earlier = [text for role, text in messages[:-1] if role == "user"]
            return Task(marker.client, marker.kind,
                        _answer(marker.kind, prompts_in(earlier + [last])))
    return None


def _open_webui(task: str) -> Task:
    output = task.partition("### Output:")[2] or task
    match = OUTPUT_KEY.search(output)
    key = match.group(1) if match else "text"
    make = OPEN_WEBUI.get(key, lambda prompts: "")
    return Task("Open WebUI", key, json.dumps({key: make(prompts_in([task]))},
                                              ensure_ascii=False))


def _answer(kind: str, prompts: list[str]) -> str:
    if kind == "title":
        return title(prompts)
    if kind == "summary":
        return summary(prompts)
    if kind == "topic_summary":
        return json.dumps({"description": title(prompts), "summary": summary(prompts)},
                          ensure_ascii=False)
    if kind == "chips":
        return json.dumps({"chips": []})
    return {"tags": "image", "emoji": "🎨", "emotion": "neutral"}.get(kind, "")


# --- what the conversation asked for ---------------------------------------------------

#: How the front ends quote the user's turns inside a task prompt: in a
#: ``<chat_history>``, Open WebUI's ``USER: …`` (up to the next turn) and LobeChat's
#: ``<user>…</user>``; LobeChat's ``user: …`` lines, and its numbered generation prompts
#: (``提示词：`` then ``1. …``).
QUOTED_TURN = re.compile(r"^USER:[ \t]*(.*?)(?=^(?:ASSISTANT|USER):|</chat_history>|\Z)"
                         r"|<user>(.*?)</user>", re.MULTILINE | re.DOTALL)
LOBE_TURN = re.compile(r"^user:[ \t]*(.+)$", re.MULTILINE)
NUMBERED = re.compile(r"^\d+\.[ \t]+(.+)$", re.MULTILINE)
LORA_TAG = re.compile(r"<lora:[^>]*>", re.IGNORECASE)


def prompts_in(texts: list[str]) -> list[str]:
    """The user's prompts in these texts: those quoted inside a task prompt, else the
    texts themselves that are not task prompts."""
    found: list[str] = []
    for text in texts:
        if "<chat_history>" in text:
            found += ["".join(turn) for turn in
                      QUOTED_TURN.findall(text.partition("<chat_history>")[2])]
        elif LOBE_TURN.search(text):
            found += LOBE_TURN.findall(text)
        elif "提示词：" in text:
            found += NUMBERED.findall(text)
        elif not any(m.phrase in text for m in MARKERS):
            found.append(text)
    return [p for p in (" ".join(LORA_TAG.sub(" ", p).split()) for p in found) if p]


def title(prompts: list[str]) -> str:
    """The first words of the first prompt."""
    if not prompts:
        return FALLBACK_TITLE
    words = prompts[0].split()
    text = " ".join(words[:TITLE_WORDS]) if len(words) > 1 else prompts[0][:TITLE_CHARS // 4]
    return text[:TITLE_CHARS].strip(" ,.;:") or FALLBACK_TITLE


def summary(prompts: list[str]) -> str:
    if not prompts:
        return "No pictures were asked for yet."
    return "Pictures made from these prompts: " + "; ".join(prompts) + "."
