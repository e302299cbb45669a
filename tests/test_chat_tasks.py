"""Chat front ends in chat mode: their background requests (title, tags, follow-ups,
summaries) are answered with text and no generation, a message of the user's still makes
exactly one image job, and each front end sees each image once. Replays of what Open
WebUI, LobeChat, NextChat and SillyTavern send (their default prompts, with a chat of
one image in them), over real sockets against the daemon + emulator."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from test_chat import IMAGE_LINK, sse_events

from arting_daemon.facades import chat_tasks

PROMPT = "a lighthouse at dawn <lora:add_detail:0.6>"
ANSWER = "![a lighthouse at dawn](http://127.0.0.1:8090/arting/v1/images/ab.png)\n\n*caption*"

#: Open WebUI's task prompts (its DEFAULT_*_PROMPT_TEMPLATEs, the chat history filled in
#: as it does: ``USER:``/``ASSISTANT:`` turns).
OPEN_WEBUI_HISTORY = f"<chat_history>\nUSER: {PROMPT}\nASSISTANT: {ANSWER}\n</chat_history>"
OPEN_WEBUI = {
    "title": "### Task:\nGenerate a concise title summarizing the chat history.\n"
             "### Guidelines:\n- Keep it short: 2-4 words is best.\n"
             "### Output:\nJSON format: { \"title\": \"your concise title here\" }\n"
             "### Examples:\n- { \"title\": \"Stock Trends\" },\n### Chat History:\n"
             + OPEN_WEBUI_HISTORY,
    "tags": "### Task:\nGenerate 1-3 broad tags categorizing the main themes of the chat "
            "history, along with 1-3 more specific subtopic tags.\n\n### Guidelines:\n- Start "
            "with high-level domains\n\n### Output:\nJSON format: { \"tags\": [\"tag1\", "
            "\"tag2\", \"tag3\"] }\n\n### Chat History:\n" + OPEN_WEBUI_HISTORY,
    "follow_ups": "### Task:\nSuggest 3-5 relevant follow-up questions or prompts that the "
                  "user might naturally ask next in this conversation as a **user**\n"
                  "### Output:\nJSON format: { \"follow_ups\": [\"Question 1?\", \"Question "
                  "2?\", \"Question 3?\"] }\n### Chat History:\n" + OPEN_WEBUI_HISTORY,
    "queries": "### Task:\nAnalyze the chat history to determine the necessity of generating "
               "search queries, in the given language.\n\n### Output:\nStrictly return in "
               "JSON format: \n{\n  \"queries\": [\"query1\", \"query2\"]\n}\n\n"
               "### Chat History:\n" + OPEN_WEBUI_HISTORY,
}


def open_webui(content: str) -> dict:
    """How Open WebUI's backend sends a task to an OpenAI connection (its metadata
    stripped): one user message, not streamed."""
    return {"model": "asyncsMIX_v7", "messages": [{"role": "user", "content": content}],
            "stream": False, "max_completion_tokens": 1000}


def chat_so_far() -> list[dict]:
    return [{"role": "user", "content": PROMPT}, {"role": "assistant", "content": ANSWER}]


NEXTCHAT_TOPIC = ("Please generate a four to five word title summarizing our conversation "
                  "without any lead-in, punctuation, quotation marks, periods, symbols, bold "
                  "text, or additional text. Remove enclosing quotation marks.")
NEXTCHAT_SUMMARY = ("Summarize the discussion briefly in 200 words or less to use as a "
                    "prompt for future context.")
NEXTCHAT_TOPIC_ZH = ("使用四到五个字直接返回这句话的简要主题，不要解释、不要标点、不要语气词、"
                     "不要多余文本，不要加粗，如果没有主题，请直接返回“闲聊”")


def nextchat(messages: list[dict], stream: bool) -> dict:
    """NextChat's summarizeSession: the chat, then its prompt (topic: not streamed)."""
    return {"messages": messages, "stream": stream, "model": "dall-e-2", "temperature": 0.5,
            "presence_penalty": 0, "frequency_penalty": 0, "top_p": 1}


LOBE_TITLE_SYSTEM = ("You are a professional conversation summarizer. Generate a concise "
                     "title that captures the essence of the conversation.\n\nRules:\n- Output "
                     "ONLY the title text, no explanations or additional context\n- Maximum 10 "
                     "words\n- Use the language specified by the locale code: en-US")
LOBE_SUMMARY_SYSTEM = ("You're an assistant who's good at extracting key takeaways from "
                       "conversations and summarizing them. Please summarize according to the "
                       "user's needs.")


def lobechat(system: str, user: str) -> dict:
    """LobeChat's system agents: their system prompt, the chat quoted as one user message,
    streamed, to the system agent's model (gpt-4o-mini unless set)."""
    return {"model": "gpt-4o-mini", "stream": True, "temperature": 1,
            "messages": [{"role": "system", "content": system},
                         {"role": "user", "content": user}]}


LOBE_QUOTED = f"user: {PROMPT}\nassistant: {ANSWER}"

SILLYTAVERN_SUMMARY = ("Ignore previous instructions. Summarize the most important facts and "
                       "events in the story so far. If a summary already exists in your "
                       "memory, use that as a base and expand with new facts. Limit the "
                       "summary to 200 words or less. Your response should include nothing "
                       "but the summary.")


def text_of(resp: httpx.Response) -> str:
    """The answer's text, streamed or not."""
    assert resp.status_code == 200, resp.text
    if resp.headers["content-type"].startswith("text/event-stream"):
        events = sse_events(resp.text)
        assert events[-1] == "[DONE]"
        return "".join(e["choices"][0]["delta"].get("content") or ""
                       for e in events[:-1] if e["choices"])
    message = resp.json()["choices"][0]["message"]
    assert "images" not in message
    return message["content"]


BACKGROUND = {
    **{f"open-webui-{kind}": open_webui(prompt) for kind, prompt in OPEN_WEBUI.items()},
    "nextchat-topic": nextchat([*chat_so_far(), {"role": "user", "content": NEXTCHAT_TOPIC}],
                               stream=False),
    "nextchat-topic-zh": nextchat([*chat_so_far(),
                                   {"role": "user", "content": NEXTCHAT_TOPIC_ZH}], False),
    "nextchat-summary": nextchat([*chat_so_far(),
                                  {"role": "system", "content": NEXTCHAT_SUMMARY}], True),
    "lobechat-title": lobechat(LOBE_TITLE_SYSTEM, LOBE_QUOTED),
    "lobechat-summary": lobechat(LOBE_SUMMARY_SYSTEM, (
        f"<chat_history>\n<user>{PROMPT}</user>\n<assistant>{ANSWER}</assistant>\n"
        "</chat_history>\n\nPlease summarize the above conversation and retain key "
        "information.")),
    "sillytavern-summary": {"model": "asyncsMIX_v7", "stream": False, "messages": [
        {"role": "system", "content": "Write Seraphina's next reply."}, *chat_so_far(),
        {"role": "system", "content": SILLYTAVERN_SUMMARY}]},
}


@pytest.mark.parametrize("name", list(BACKGROUND))
def test_a_front_ends_background_request_makes_no_image(daemon, name):
    resp = httpx.post(daemon.v1 + "/chat/completions", json=BACKGROUND[name], timeout=30)
    text = text_of(resp)
    assert daemon.sandbox.requests_for("create") == [] and not daemon.engine._jobs
    assert "![" not in text
    if name.startswith("open-webui"):
        answer = json.loads(text)
        assert list(answer) == [name.removeprefix("open-webui-")]
        if "title" in answer:
            assert answer["title"] == "a lighthouse at dawn"
    elif "topic" in name or "title" in name:
        assert text == "a lighthouse at dawn"
    else:
        assert "a lighthouse at dawn" in text


def test_open_webui_message_then_its_three_tasks_make_exactly_one_image(daemon):
    """What one chat message in Open WebUI sends: the message (streamed, with usage),
    then title, tags and follow-ups to the same model."""
    message = {"model": "asyncsMIX_v7", "stream": True, "stream_options": {"include_usage": True},
               "messages": [{"role": "user", "content": PROMPT}]}
    resp = httpx.post(daemon.v1 + "/chat/completions", json=message, timeout=30)
    streamed = sse_events(resp.text)
    content = "".join(e["choices"][0]["delta"].get("content") or ""
                      for e in streamed[:-1] if e["choices"])
    assert len(IMAGE_LINK.findall(content)) == 1
    # the image is in the markdown only: Open WebUI would save delta.images a second time
    assert not any("images" in e["choices"][0]["delta"] for e in streamed[:-1] if e["choices"])
    for kind in ("title", "tags", "follow_ups"):
        answer = httpx.post(daemon.v1 + "/chat/completions", json=open_webui(OPEN_WEBUI[kind]),
                            timeout=30).json()["choices"][0]["message"]["content"]
        assert kind in json.loads(answer)
    assert len(daemon.sandbox.requests_for("create")) == 1 and len(daemon.engine._jobs) == 1


def test_nextchat_message_topic_and_summary_make_exactly_one_image(daemon):
    first = httpx.post(daemon.v1 + "/chat/completions", timeout=30,
                       json=nextchat([{"role": "user", "content": PROMPT}], stream=True))
    assert len(IMAGE_LINK.findall(first.text)) == 1
    for name in ("nextchat-topic", "nextchat-summary"):
        httpx.post(daemon.v1 + "/chat/completions", json=BACKGROUND[name], timeout=30)
    assert len(daemon.sandbox.requests_for("create")) == 1


def test_lobechat_message_and_its_title_make_exactly_one_image(daemon):
    message = {"model": "asyncsMIX_v7", "stream": True, "temperature": 1, "top_p": 1,
               "messages": [{"role": "system", "content": ""},
                            {"role": "user", "content": PROMPT}]}
    httpx.post(daemon.v1 + "/chat/completions", json=message, timeout=30)
    httpx.post(daemon.v1 + "/chat/completions", json=BACKGROUND["lobechat-title"], timeout=30)
    assert len(daemon.sandbox.requests_for("create")) == 1


def test_a_prompt_that_merely_mentions_a_title_is_still_a_picture():
    assert chat_tasks.recognise([("user", "a book titled 'Summarize the discussion'")]) is None
    assert chat_tasks.recognise([("user", "### Taskbar icons, flat design")]) is None
    assert chat_tasks.recognise([]) is None


def test_titles_are_the_first_words_of_the_first_prompt():
    assert chat_tasks.title(["a red fox   sitting in deep snow at night, 4k"]) == \
        "a red fox sitting in deep"
    assert chat_tasks.title(["一只在雪地里的红狐狸，夜晚"]) == "一只在雪地里的红狐狸"
    assert chat_tasks.title([]) == chat_tasks.FALLBACK_TITLE


# --- how the images come ----------------------------------------------------------------------

def test_asked_the_openrouter_way_the_images_come_apart_and_once(daemon):
    body = {"model": "asyncsMIX_v7", "modalities": ["image", "text"],
            "messages": [{"role": "user", "content": "a red fox"}]}
    message = httpx.post(daemon.v1 + "/chat/completions", json=body,
                         timeout=30).json()["choices"][0]["message"]
    assert "![" not in message["content"] and len(message["images"]) == 1
    events = sse_events(httpx.post(daemon.v1 + "/chat/completions", json={**body, "stream": True},
                                   timeout=30).text)
    deltas = [e["choices"][0]["delta"] for e in events[:-1] if e["choices"]]
    assert not any("![" in (d.get("content") or "") for d in deltas)
    (images,) = [d["images"] for d in deltas if "images" in d]
    assert images[0]["image_url"]["url"].startswith("data:image/png;base64,")


@pytest.mark.parametrize("how", ["setting", "request"])
def test_inline_images_pass_sillytaverns_forbid_external_media(make_daemon, how):
    """SillyTavern removes an <img> whose src names another origin (``://``) unless the
    user allows external media; a data: URL is not external."""
    daemon = make_daemon(chat_inline_images=how == "setting")
    body = {"model": "asyncsMIX_v7", "messages": [{"role": "user", "content": "a red fox"}]}
    if how == "request":
        body["inline_images"] = True
    for stream in (False, True):
        resp = httpx.post(daemon.v1 + "/chat/completions", json={**body, "stream": stream},
                          timeout=30)
        text = text_of(resp) if stream else resp.json()["choices"][0]["message"]["content"]
        (url,) = [line.partition("](")[2].rstrip(")") for line in text.splitlines()
                  if line.startswith("![")]
        assert "://" not in url and url.startswith("data:image/png;base64,")
        assert base64.b64decode(url.partition(",")[2]).startswith(b"\x89PNG")
    if how == "setting":     # and a request can still ask for links
        text = httpx.post(daemon.v1 + "/chat/completions", json={**body, "inline_images": False},
                          timeout=30).json()["choices"][0]["message"]["content"]
        assert IMAGE_LINK.search(text)
