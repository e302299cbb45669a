"""Chat completions as an image generator, driven by the real ``openai`` package and by a
replay of NextChat's streaming request, over real sockets."""

from __future__ import annotations

import base64
import io
import json
import re
import time

import httpx
import openai
import pytest
from PIL import Image

from arting_daemon.facades import openai_chat

IMAGE_LINK = re.compile(r"!\[[^\]]*\]\((http://[^)\s]+\.png)\)")


@pytest.fixture
def client(daemon):
    return openai.OpenAI(base_url=daemon.v1, api_key="anything", max_retries=0)


def user(text) -> list[dict]:
    return [{"role": "user", "content": text}]


def png_bytes(size=(96, 64), color=(0, 128, 255)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def sse_events(body: str) -> list:
    """Each ``data:`` payload of an SSE body: JSON, or the literal [DONE]."""
    out = []
    for block in body.split("\n\n"):
        if block.startswith("data: "):
            payload = block.removeprefix("data: ")
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def test_non_streamed_answer_links_and_carries_the_image(client, daemon):
    resp = client.chat.completions.create(model="asyncsMIX_v7",
                                          messages=user("a lighthouse at dawn"))
    assert resp.object == "chat.completion" and resp.model == "asyncsMIX_v7"
    choice = resp.choices[0]
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    (url,) = IMAGE_LINK.findall(choice.message.content)
    served = httpx.get(url)
    assert served.status_code == 200 and served.headers["content-type"] == "image/png"
    images = choice.message.model_extra["images"]          # LobeChat / OpenRouter shape
    assert images[0]["type"] == "image_url"
    data_url = images[0]["image_url"]["url"]
    assert data_url.startswith("data:image/png;base64,")
    assert base64.b64decode(data_url.partition(",")[2]) == served.content
    assert resp.usage.total_tokens > 0
    body = daemon.sandbox.requests_for("create")[-1].body
    assert (body["prompt"], body["model_id"]) == ("a lighthouse at dawn", "asyncsMIX_v7")


def test_streamed_answer_with_usage(client, daemon):
    chunks = list(client.chat.completions.create(
        model="dall-e-3", messages=user("a fox in snow"), stream=True,
        stream_options={"include_usage": True}))
    assert len({c.id for c in chunks}) == 1 and len({c.created for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes.count("stop") == 1 and finishes[-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content.startswith("Generating an image: oneFORALLAnime · 512×768 · seed ")
    assert "- generating" in content and "- done in" in content
    assert len(IMAGE_LINK.findall(content)) == 1
    assert daemon.sandbox.requests_for("create")[-1].body["model_id"] == "oneFORALLAnime"


def test_without_stream_options_there_is_no_usage_chunk(client):
    chunks = list(client.chat.completions.create(model="oneFORALLAnime",
                                                 messages=user("p"), stream=True))
    assert all(c.choices for c in chunks) and chunks[-1].choices[0].finish_reason == "stop"


def test_prompt_is_the_last_user_message_with_its_text_parts_joined(client, daemon):
    client.chat.completions.create(model="oneFORALLAnime", messages=[
        {"role": "system", "content": "You draw pictures."},
        {"role": "user", "content": "an old request"},
        {"role": "assistant", "content": "![old](http://x/old.png)"},
        {"role": "user", "content": [{"type": "text", "text": "a red fox"},
                                     {"type": "text", "text": "in the snow"}]},
    ])
    assert daemon.sandbox.requests_for("create")[-1].body["prompt"] == "a red fox\nin the snow"


def test_arting_extras_and_lora_tags(client, daemon):
    client.chat.completions.create(
        model="dreamshaper_8", messages=user("a castle <lora:add_detail:0.4>"), seed=77,
        extra_body={"negative_prompt": "fog", "size": "768x512", "steps": 12})
    body = daemon.sandbox.requests_for("create")[-1].body
    assert (body["prompt"], body["seed"], body["negative_prompt"]) == ("a castle", 77, "fog")
    assert (body["width"], body["height"], body["steps"]) == (768, 512, 12)
    assert (body["model_id"], body["lora_ids"], body["lora_weight"]) == (
        "dreamshaper_8", "add_detail", "0.4")


def test_every_listed_model_id_is_a_chat_model(client, daemon):
    ids = [m.id for m in client.models.list().data]
    assert {"oneFORALLAnime", "asyncsMIX_v7", "dall-e-3"} <= set(ids)
    for model_id in ("cyberrealisticPony_v65", "gpt-image-1"):
        resp = client.chat.completions.create(model=model_id, messages=user("p"))
        assert resp.model == model_id and IMAGE_LINK.search(resp.choices[0].message.content)
    assert daemon.sandbox.requests_for("create")[-2].body["model_id"] == "cyberrealisticPony_v65"


def test_an_image_in_the_message_edits_it(client, daemon):
    data_url = "data:image/png;base64," + base64.b64encode(png_bytes((320, 256))).decode()
    resp = client.chat.completions.create(model="oneFORALLAnime", messages=[{
        "role": "user", "content": [{"type": "text", "text": "as a watercolour"},
                                    {"type": "image_url", "image_url": {"url": data_url}}]}])
    assert resp.choices[0].message.content.count("![") == 1
    body = daemon.sandbox.requests_for("i2i_create")[-1].body
    assert (body["prompt"], body["width"], body["height"]) == ("as a watercolour", 320, 256)
    assert len(daemon.uploads()) == 1            # get_oss_signed_urls, then the PUT


# --- NextChat ----------------------------------------------------------------------------

NEXTCHAT_HEADERS = {"Content-Type": "application/json", "Accept": "text/event-stream",
                    "Accept-Encoding": "gzip, deflate, br", "Authorization": "Bearer nk"}


def nextchat_body(text: str) -> dict:
    """What NextChat's OpenAI client posts for a chat turn (app/client/platforms/openai.ts)."""
    return {"messages": [{"role": "system", "content": "You are a helpful assistant."},
                         {"role": "user", "content": text}],
            "stream": True, "model": "oneFORALLAnime", "temperature": 0.5,
            "presence_penalty": 0, "frequency_penalty": 0, "top_p": 1}


def test_nextchat_streaming_replay(daemon):
    with httpx.Client(timeout=30) as http:
        with http.stream("POST", daemon.v1 + "/chat/completions",
                         json=nextchat_body("a cat on a roof"),
                         headers=NEXTCHAT_HEADERS) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            assert "content-encoding" not in resp.headers
            raw = resp.read().decode()
    assert raw.endswith("data: [DONE]\n\n")
    events = sse_events(raw)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" and c["choices"] for c in chunks)
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    (url,) = IMAGE_LINK.findall(content)
    assert httpx.get(url).status_code == 200


def test_nextchat_sees_errors_before_the_stream_as_json(daemon):
    resp = httpx.post(daemon.v1 + "/chat/completions", json=nextchat_body("   "),
                      headers=NEXTCHAT_HEADERS)
    assert resp.status_code == 400
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.json()["error"]["param"] == "messages"


# --- errors ------------------------------------------------------------------------------

def test_errors_before_the_stream_starts_are_json(client, make_daemon):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="x", stream=True, messages=[
            {"role": "system", "content": "no user here"}])
    assert err.value.param == "messages" and "user message" in err.value.message
    daemon = make_daemon(img2img=False)
    off = openai.OpenAI(base_url=daemon.v1, api_key="x", max_retries=0)
    data_url = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    with pytest.raises(openai.BadRequestError) as err:
        off.chat.completions.create(model="x", stream=True, messages=[{"role": "user", "content": [
            {"type": "text", "text": "p"}, {"type": "image_url", "image_url": {"url": data_url}}]}])
    assert err.value.code == "feature_disabled"


def test_wrong_key_is_401(make_daemon):
    daemon = make_daemon(api_keys=["right"])
    wrong = openai.OpenAI(base_url=daemon.v1, api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.chat.completions.create(model="x", messages=user("p"), stream=True)


def test_a_failure_after_the_stream_started_ends_it_readably(client, daemon):
    daemon.do(daemon.sandbox.add_fault, "fail", route="get")
    seen = []
    with pytest.raises(openai.APIError) as err:
        for chunk in client.chat.completions.create(model="x", messages=user("p"),
                                                    stream=True):
            seen.append(chunk)
    assert "failed" in err.value.message.lower()
    shown = "".join(c.choices[0].delta.content or "" for c in seen if c.choices)
    assert "**Image generation failed:**" in shown      # for UIs that show only content
    raw = httpx.post(daemon.v1 + "/chat/completions", timeout=30,
                     json={"model": "x", "messages": user("p"), "stream": True}).text
    daemon.do(daemon.sandbox.clear_faults)
    events = sse_events(raw)
    assert "error" in events[-1] and "[DONE]" not in events


def test_progress_lines_keep_coming_while_a_job_runs(make_daemon, monkeypatch):
    assert openai_chat.PROGRESS_EVERY <= 10            # what proxies and clients tolerate
    monkeypatch.setattr(openai_chat, "PROGRESS_EVERY", 0.5)
    daemon = make_daemon(sandbox_options={"generation_time": 3.0})
    arrivals, lines = [], []
    with httpx.stream("POST", daemon.v1 + "/chat/completions", timeout=30,
                      json={"model": "x", "messages": user("slow"), "stream": True}) as resp:
        for line in resp.iter_lines():
            if line.startswith("data: {"):
                arrivals.append(time.monotonic())
                chunk = json.loads(line[6:])
                if chunk["choices"]:
                    lines.append(chunk["choices"][0]["delta"].get("content") or "")
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    assert arrivals[-1] - arrivals[0] > 2.5 and max(gaps) < 1.2, gaps
    running = [ln for ln in lines if ln.startswith("- generating")]
    assert len(running) >= 4 and all("s elapsed · about" in ln for ln in running)


def job_states(daemon) -> list[str]:
    return [j.state.value for j in daemon.engine._jobs.values()]


def wait_until(predicate, timeout=3.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_client_going_away_cancels_the_job(make_daemon):
    daemon = make_daemon(sandbox_options={"generation_time": 10.0})
    with httpx.stream("POST", daemon.v1 + "/chat/completions", timeout=30,
                      json={"model": "x", "messages": user("p"), "stream": True}) as resp:
        for line in resp.iter_lines():
            if "- generating" in line:
                break
    assert wait_until(lambda: job_states(daemon) == ["cancelled"]), job_states(daemon)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(daemon.v1 + "/chat/completions", timeout=0.5,
                   json={"model": "x", "messages": user("p")})
    assert wait_until(lambda: job_states(daemon) == ["cancelled", "cancelled"]), \
        job_states(daemon)
