"""Settings: embedded defaults ← ``arting.toml`` ← environment ← command line.

Every key has a default, a TOML name (the field name) and one or more environment
names, so the daemon starts with no file at all. Values are validated once, by
pydantic, and a wrong value stops start-up with one message naming the key, where
it came from, and what is allowed.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import functools
import json
import logging
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import (BaseModel, ConfigDict, Field, SecretStr, ValidationError,
                      field_validator, model_validator)

from .provider_config import ProviderConfig, check as check_providers
from .transport import proxies

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

DEFAULT_USER_AGENT = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
                      "(KHTML, like Gecko) Chrome/141.0.0.0 Safari/537.36")


class ConfigError(Exception):
    """A setting is wrong; the message names it and says what is allowed."""


def default_data_dir() -> Path:
    """The per-user data directory, following each platform's convention."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "arting-2api"


def _s(default: Any, env: str | tuple[str, ...], doc: str, **kw: Any) -> Any:
    envs = (env,) if isinstance(env, str) else env
    return Field(default, description=doc, json_schema_extra={"env": list(envs)}, **kw)


def _split_list(value: Any) -> Any:
    """Lists may be written as TOML arrays, comma-separated strings, or (in the
    environment, where an empty value means unset) JSON arrays such as ``[]``."""
    if isinstance(value, str) and value.strip().startswith("["):
        with contextlib.suppress(ValueError):
            return json.loads(value)
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


LIST_FIELDS = ("api_keys", "basic_auth", "auth_tokens", "cors_origins", "allowed_hosts",
               "image_hosts",
               "failed_statuses", "done_statuses", "upscale_done_statuses",
               "upscale_failed_statuses", "extra_models", "extra_loras",
               "webhook_urls", "webhook_allow_hosts", "no_proxy", "sandbox_providers")


class Settings(BaseModel):
    """Everything the daemon can be told. The documentation's configuration reference is
    made from this class (tools/docs_hooks.py)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # --- serving ---------------------------------------------------------------------
    host: str = _s("127.0.0.1", "ARTING_HOST",
                   "Address to listen on. Anything but loopback needs an API key "
                   "(or `allow_insecure`, or a loopback `published_host`).")
    port: int = _s(8090, "ARTING_PORT", "TCP port to listen on (0 picks a free one).",
                   ge=0, le=65535)
    data_dir: Path = _s(default_data_dir(), "ARTING_DATA_DIR",
                        "Where images, the job journal and the anonymous identity live.")
    public_url: str | None = _s(None, "ARTING_PUBLIC_URL",
                                "Base URL clients reach the daemon at, for image links "
                                "(default: from each request's Host header).")
    api_keys: list[SecretStr] = _s([], ("API_MASTER_KEY", "ARTING_API_KEYS"),
                                   "Keys clients must send as `Authorization: Bearer <key>`. "
                                   "Empty: the API is open.")
    basic_auth: list[SecretStr] = _s([], "ARTING_BASIC_AUTH",
                                     "`user:password` pairs accepted as HTTP Basic auth "
                                     "(as A1111's `--api-auth`).")
    allow_insecure: bool = _s(False, "ARTING_ALLOW_INSECURE",
                              "Allow listening on a non-loopback address with no key.")
    published_host: str | None = _s(None, "ARTING_PUBLISHED_HOST",
                                    "In a container: the host address its port is published "
                                    "on (`-p 127.0.0.1:8090:8090`). A loopback address lets "
                                    "the daemon listen on all the container's interfaces "
                                    "with no key.")
    cors_origins: list[str] = _s([], "ARTING_CORS_ORIGINS",
                                 "Origins allowed to call the API from a browser (`*` for any). "
                                 "A page of any other origin is refused (403) when it asks for "
                                 "a change or opens the WebSocket.")
    allowed_hosts: list[str] = _s([], "ARTING_ALLOWED_HOSTS",
                                  "Host names the daemon answers to besides `localhost`, IP "
                                  "addresses, its `host` and `public_url`'s (`.example.com`: "
                                  "that domain and its subdomains; `*`: any). Checked with no "
                                  "keys or with `basic_auth` (a refused name gets 421): it "
                                  "keeps pages on other sites from reaching the daemon "
                                  "through a name of theirs (DNS rebinding).")
    max_body_mb: float = _s(32.0, "ARTING_MAX_BODY_MB",
                            "Largest request body accepted, in MiB.", gt=0, le=1024)
    log_level: Literal["debug", "info", "warning", "error"] = _s(
        "info", "ARTING_LOG_LEVEL", "Log verbosity.")
    log_stream: Literal["stderr", "stdout"] = _s(
        "stderr", "ARTING_LOG_STREAM",
        "Where the log goes; the container image sets `stdout` (a container's log is its "
        "output).")
    event_loop: Literal["auto", "uvloop", "asyncio"] = _s(
        "auto", "ARTING_EVENT_LOOP",
        "The event loop the daemon runs on: `auto` takes uvloop where it is installed (a "
        "dependency on Linux and macOS), else asyncio's own; `uvloop` insists on it.")

    # --- upstream ----------------------------------------------------------------------
    base_url: str = _s("https://api.arting.ai", "ARTING_BASE_URL",
                       "Arting's API origin.")
    auth_tokens: list[SecretStr] = _s([], "ARTING_AUTH_TOKEN",
                                      "Arting `Authorization` tokens (UUID or JWT), one or a "
                                      "comma list. Empty: an anonymous UUID identity is used.")
    user_agent: str = _s(DEFAULT_USER_AGENT, "ARTING_USER_AGENT",
                         "Browser User-Agent sent upstream (must match `cf_clearance`).")
    origin: str = _s("https://arting.ai", "ARTING_ORIGIN", "`Origin` header sent upstream.")
    referer: str = _s("https://arting.ai/", "ARTING_REFERER", "`Referer` header sent upstream.")
    cf_clearance: SecretStr | None = _s(None, "ARTING_CF_CLEARANCE",
                                        "A Cloudflare `cf_clearance` cookie from a browser "
                                        "that passed the challenge.")
    image_hosts: list[str] = _s(["arting.ai", "*.arting.ai", "*.r2.dev"], "ARTING_IMAGE_HOSTS",
                                "Hosts result images may be downloaded from (`*.` matches "
                                "subdomains); the upstream's own host is always allowed. A "
                                "redirect is followed (up to five) only to these hosts. A "
                                "signed upload URL Arting names may also point at one of "
                                "these when it is on a private address.")
    request_timeout: float = _s(30.0, "ARTING_REQUEST_TIMEOUT",
                                "Seconds one upstream HTTP exchange may take.", gt=0)
    img2img: bool = _s(False, "ARTING_IMG2IMG",
                       "Use Arting's image-to-image endpoints (their existence is unconfirmed; "
                       "on with `--sandbox`).")
    img2img_transport: Literal["signed_url", "data_url"] = _s(
        "signed_url", "ARTING_IMG2IMG_TRANSPORT",
        "How an init image reaches Arting's image-to-image: `signed_url` (uploaded the way "
        "Arting's own clients do, its URL as `image_url`) or `data_url` (inline in "
        "`image_url`; no public client does this).")
    failed_statuses: list[str] = _s(["failed", "error"], "ARTING_FAILED_STATUSES",
                                    "Values of `data.status` that mean the job failed.")
    done_statuses: list[str] = _s(["success", "succeeded", "done", "completed", "finished"],
                                  "ARTING_DONE_STATUSES",
                                  "Values of `data.status` that mean finished: with no "
                                  "`output` the job counts as failed.")
    upscale: bool = _s(True, "ARTING_UPSCALE",
                       "Offer upscaling (2× or 4×) through Arting's image-enhance API (LIKELY: "
                       "seen in two public clients; always on with `--sandbox`).")
    upscale_version: str = _s("v1.4", "ARTING_UPSCALE_VERSION",
                              "`version` sent to Arting's image-enhance.", min_length=1)
    upscale_done_statuses: list[int] = _s([1], "ARTING_UPSCALE_DONE_STATUSES",
                                          "Values of image-enhance's integer `data.status` "
                                          "that mean done.")
    upscale_failed_statuses: list[int] = _s([-1], "ARTING_UPSCALE_FAILED_STATUSES",
                                            "Values of image-enhance's integer `data.status` "
                                            "that mean failed (any other value: pending).")
    token_max_jobs: int = _s(4, "ARTING_TOKEN_MAX_JOBS",
                             "Jobs one token may have in flight upstream at once.", ge=1)
    token_probe_backoff: float = _s(30.0, "ARTING_TOKEN_PROBE_BACKOFF",
                                    "Seconds before a rate-limited, blocked or refused token is "
                                    "first re-probed (a poll, never a generation); doubles "
                                    "after each failed probe.", gt=0)
    token_probe_max_backoff: float = _s(1800.0, "ARTING_TOKEN_PROBE_MAX_BACKOFF",
                                        "Longest pause between two probes of one token.", gt=0)
    token_daily_limit: int | None = _s(None, "ARTING_TOKEN_DAILY_LIMIT",
                                       "Images one token may create per UTC day (unset: no "
                                       "cap); a token may set its own when added.", ge=1)
    token_min_interval: float | None = _s(None, "ARTING_TOKEN_MIN_INTERVAL",
                                          "Seconds at least between two creates on one token "
                                          "(unset: none); a token may set its own.", ge=0)
    low_balance: int | None = _s(None, "ARTING_LOW_BALANCE",
                                 "A token whose `remain_balance` falls below this raises an "
                                 "operator event (log, status, metric, page, "
                                 "`operator_webhook_url`).", ge=0)
    secret_key: SecretStr | None = _s(None, "ARTING_SECRET_KEY",
                                      "Seals the tokens added at runtime (libsodium's secret "
                                      "box) in the data directory; required to share them "
                                      "through Redis "
                                      "(`redis_url`). Keep it: without it they cannot be read.")
    operator_webhook_url: str | None = _s(None, "ARTING_OPERATOR_WEBHOOK_URL",
                                          "Where operator events (a token refused, a low "
                                          "balance, no usable token) are POSTed, signed with "
                                          "`webhook_secret`, journaled and retried "
                                          "(`webhook_retry_for`) as job webhooks are.")
    cf_solver: bool = _s(True, "ARTING_CF_SOLVER",
                         "On a Cloudflare challenge, let cloudscraper try to pass it (in a "
                         "worker thread) and reuse its cookies and User-Agent.")
    impersonate: str = _s("auto", "ARTING_IMPERSONATE",
                          "Arting's calls through a browser-like client (curl_cffi: a "
                          "browser's TLS and HTTP/2 fingerprints): `off`; `auto` (the light "
                          "pool until Cloudflare challenges an identity, then that identity's "
                          "calls go through it); or a browser profile such as `chrome`, "
                          "`chrome131`, `safari`, `firefox` (always).",
                          pattern=r"^[a-z][a-z0-9_]*$")

    # --- network ----------------------------------------------------------------------
    proxy: SecretStr | None = _s(None, "ARTING_PROXY",
                                 "The proxy every outbound request goes through (webhooks "
                                 "aside): `http://`, `https://` (TLS to the proxy), "
                                 "`socks5://` or `socks5h://` (the proxy resolves names), "
                                 "with `user:password@` if it wants them; `direct` for none. "
                                 "Unset: HTTPS_PROXY, HTTP_PROXY, ALL_PROXY as curl reads "
                                 "them.")
    no_proxy: list[str] = _s([], "ARTING_NO_PROXY",
                             "Destinations that go direct, not through the proxy: `*`, a host "
                             "and its subdomains, an IP address or network, each with an "
                             "optional `:port`. Empty: NO_PROXY.")
    webhook_proxy: SecretStr | None = _s(None, "ARTING_WEBHOOK_PROXY",
                                         "The proxy webhook deliveries go through (the same "
                                         "forms as `proxy`). Unset: direct, whatever the "
                                         "environment says.")

    # --- generation rules ---------------------------------------------------------------
    default_model: str = _s("oneFORALLAnime", "ARTING_DEFAULT_MODEL",
                            "Model used when none is given, and for OpenAI model names.")
    unknown_models: Literal["fallback", "reject"] = _s(
        "fallback", "ARTING_UNKNOWN_MODELS",
        "What an unknown model name does: `fallback` to the default model, or `reject` (404).")
    extra_models: list[str] = _s([], "ARTING_EXTRA_MODELS",
                                 "Arting model ids to offer beside the built-in catalogue.")
    extra_loras: list[str] = _s([], "ARTING_EXTRA_LORAS",
                                "Arting LoRA ids to offer beside the built-in catalogue.")
    default_size: str = _s("512x768", "ARTING_DEFAULT_SIZE",
                           "Size used for `auto` or when no size is given.",
                           pattern=r"^\d+x\d+$")
    min_side: int = _s(256, "ARTING_MIN_SIDE", "Smallest width or height sent upstream.", ge=64)
    max_side: int = _s(1536, "ARTING_MAX_SIDE", "Largest width or height sent upstream.", ge=64)
    max_pixels: int = _s(1024 * 1024, "ARTING_MAX_PIXELS",
                         "Largest width × height sent upstream; bigger sizes are scaled down.",
                         ge=64 * 64)
    size_multiple: int = _s(8, "ARTING_SIZE_MULTIPLE",
                            "Width and height are rounded to a multiple of this.", ge=1, le=256)
    max_images: int = _s(4, "ARTING_MAX_IMAGES", "Most images one request may ask for.",
                         ge=1, le=64)
    max_input_pixels: int = _s(4096 * 4096, "ARTING_MAX_INPUT_PIXELS",
                               "Largest width × height of a picture a client sends (init "
                               "images, masks, pictures to upscale), read from its header "
                               "before it is decoded; larger ones get 400.", ge=64 * 64)
    max_upscale_pixels: int = _s(8192 * 8192, "ARTING_MAX_UPSCALE_PIXELS",
                                 "Largest width × height an upscale may make (Arting's or "
                                 "the local `Lanczos` and `Nearest`); a request for more "
                                 "gets 400 before any work.", ge=64 * 64)
    max_prompt_chars: int = _s(4000, "ARTING_MAX_PROMPT_CHARS",
                               "Longest prompt accepted, in characters.", ge=1)
    default_nsfw: bool = _s(False, "ARTING_DEFAULT_NSFW",
                            "`is_nsfw` sent when a request does not say.")
    chat_inline_images: bool = _s(
        False, "ARTING_CHAT_INLINE_IMAGES",
        "Chat answers carry their images inline (`data:` URLs in the markdown) instead of "
        "links to this daemon: for front ends that block other origins' media "
        "(SillyTavern's *Forbid External Media*). One request can ask with "
        "`inline_images: true` (or refuse with `false`).")

    # --- job engine -------------------------------------------------------------------
    max_active_jobs: int = _s(32, "ARTING_MAX_ACTIVE_JOBS",
                              "Jobs worked on at once; the rest wait in the queue.", ge=1)
    max_queued_jobs: int = _s(256, "ARTING_MAX_QUEUED_JOBS",
                              "Jobs that may wait; past this, requests get 429.", ge=0)
    job_timeout: float = _s(300.0, "ARTING_JOB_TIMEOUT",
                            "Seconds a whole job may take, queue included.", gt=0)
    submit_timeout: float = _s(60.0, "ARTING_SUBMIT_TIMEOUT",
                               "Seconds the submit stage may take, retries included.", gt=0)
    retry_budget: float = _s(20.0, "ARTING_RETRY_BUDGET",
                             "Seconds a create may spend retrying (backoff and rate-limit "
                             "waits); past it, the client gets the error and its Retry-After.",
                             ge=0)
    run_timeout: float = _s(240.0, "ARTING_RUN_TIMEOUT",
                            "Seconds Arting may take to finish a submitted job.", gt=0)
    download_timeout: float = _s(60.0, "ARTING_DOWNLOAD_TIMEOUT",
                                 "Seconds the download stage may take.", gt=0)
    poll_min_interval: float = _s(0.4, "ARTING_POLL_MIN_INTERVAL",
                                  "Shortest pause between two polls of one job.", gt=0)
    poll_max_interval: float = _s(5.0, "ARTING_POLL_MAX_INTERVAL",
                                  "Longest pause between two polls of one job.", gt=0)
    poll_rate: float = _s(0.5, "ARTING_POLL_RATE",
                          "Polls Arting may get per second of generation, on average over "
                          "recent jobs; the schedule spends them where jobs usually finish. "
                          "Higher notices finished jobs sooner (see bench/RESULTS.md).",
                          gt=0, le=10)
    shutdown_grace: float = _s(10.0, "ARTING_SHUTDOWN_GRACE",
                               "Seconds running jobs get to finish on SIGTERM; unfinished "
                               "ones resume at the next start.", ge=0)
    expected_duration: float = _s(15.0, "ARTING_EXPECTED_DURATION",
                                  "Generation time assumed before jobs finished: for ETAs, and "
                                  "the poll schedule of the first jobs is planned around it.",
                                  gt=0)

    # --- results: cache and store ------------------------------------------------------
    result_cache: bool = _s(True, "ARTING_RESULT_CACHE",
                            "Answer a request that names its seed and matches an earlier "
                            "successful generation exactly with that generation's stored "
                            "images, with no new Arting job (clients opt out with "
                            "`Cache-Control: no-cache`).")
    store_max_gb: float | None = _s(None, "ARTING_STORE_MAX_GB",
                                    "Largest size of the image store in GB (10⁹ bytes); past "
                                    "it, the least recently served images are removed. "
                                    "Unset: no limit.", gt=0)
    store_max_images: int | None = _s(None, "ARTING_STORE_MAX_IMAGES",
                                      "Most images the store keeps; past it, the least "
                                      "recently served are removed. Unset: no limit.", ge=1)
    job_retention: float | None = _s(30 * 86400.0, "ARTING_JOB_RETENTION",
                                     "Seconds a finished job's record is kept; then it is "
                                     "removed, with its result-cache entry and the stored "
                                     "images no other job refers to. Unset: kept for ever.",
                                     gt=0)

    # --- webhooks -----------------------------------------------------------------------
    webhook_urls: list[str] = _s([], "ARTING_WEBHOOK_URLS",
                                 "URLs every finished job is POSTed to (signed, see "
                                 "`webhook_secret`), besides a job's own `webhook_url`.")
    webhook_secret: SecretStr | None = _s(None, "ARTING_WEBHOOK_SECRET",
                                          "The Standard Webhooks secret deliveries are signed "
                                          "with: `whsec_` and base64 (of 24-64 random bytes). "
                                          "Webhooks need it.")
    webhook_allow_hosts: list[str] = _s([], "ARTING_WEBHOOK_ALLOW_HOSTS",
                                        "Hosts webhooks may go to although they are on "
                                        "loopback, link-local or private addresses (`*.` "
                                        "matches subdomains); others must be public.")
    webhook_timeout: float = _s(10.0, "ARTING_WEBHOOK_TIMEOUT",
                                "Seconds one webhook delivery attempt may take.", gt=0, le=60)
    webhook_retry_for: float = _s(3600.0, "ARTING_WEBHOOK_RETRY_FOR",
                                  "Seconds a failing delivery is retried (with backoff, the "
                                  "same `webhook-id` each time) before it is given up.",
                                  ge=0)

    # --- providers ----------------------------------------------------------------------
    providers: list[ProviderConfig] = _s(
        [], "ARTING_PROVIDERS",
        "More places to make images: `[[providers]]` tables (in the environment, a JSON "
        "list); see *Providers*. Empty: Arting alone, from the settings above.")
    fallbacks: dict[str, list[str]] = _s(
        {}, "ARTING_FALLBACKS",
        "Per model id (or `*`), where its jobs go when its provider fails: model ids or "
        "`<provider>/*` (in the environment, a JSON object).")

    # --- replicas ---------------------------------------------------------------------
    redis_url: SecretStr | None = _s(None, "ARTING_REDIS_URL",
                                     "Redis shared by several daemons (`redis://host:6379/0`; "
                                     "a password in it is kept secret). Unset: one daemon, "
                                     "its state in the data directory.")
    replica_lease: float = _s(10.0, "ARTING_REPLICA_LEASE",
                              "With `redis_url`: seconds a replica holds its jobs without "
                              "renewing; another one takes over a dead replica's jobs after "
                              "this.", ge=2, le=300)

    # --- sandbox ----------------------------------------------------------------------
    sandbox: bool = _s(False, "ARTING_SANDBOX",
                       "Run the built-in Arting emulator and use it as the upstream.")
    sandbox_generation_time: float = _s(3.0, "ARTING_SANDBOX_GENERATION_TIME",
                                        "Seconds the emulator takes per job.", ge=0)
    sandbox_replay: Path | None = _s(None, "ARTING_SANDBOX_REPLAY",
                                     "A directory written by `arting-daemon check --record`: "
                                     "the emulator answers with its recorded shapes, literals "
                                     "and timings (needs `sandbox`).")
    sandbox_providers: list[Literal["midjourney", "stability"]] = _s(
        ["midjourney", "stability"], "ARTING_SANDBOX_PROVIDERS",
        "With `sandbox`: the providers besides Arting whose emulators run too, so their "
        "models are offered (not when replaying a record, nor where `[[providers]]` has "
        "one of that name or kind). Empty: Arting alone.")

    @field_validator(*LIST_FIELDS, mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("providers", "fallbacks", mode="before")
    @classmethod
    def _json(cls, value: Any) -> Any:
        """Tables in the file; JSON text in the environment."""
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                raise ValueError("must be JSON (a list of provider tables, or an object of "
                                 "model → fallbacks)") from None
        return value

    @field_validator("base_url", "public_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("webhook_urls")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(("http://", "https://")):
                raise ValueError("each must be an http:// or https:// URL")
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        names = [name.lower().rstrip(".") for name in value]
        for name in names:
            if not re.fullmatch(r"\*|\.?[a-z0-9_-]+(\.[a-z0-9_-]+)*", name):
                raise ValueError(f"{name!r}: each must be a host name (no scheme, port or "
                                 "path), `.example.com` for a domain and its subdomains, "
                                 "or `*`")
        return names

    @field_validator("webhook_secret")
    @classmethod
    def _whsec(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and webhook_key(value) is None:
            raise ValueError("must be `whsec_` followed by the base64 of 24 to 64 bytes, "
                             "e.g. whsec_$(head -c 32 /dev/urandom | base64)")
        return value

    @field_validator("proxy", "webhook_proxy")
    @classmethod
    def _proxy(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            proxies.parse(value.get_secret_value())    # raises, saying what is wrong
        return value

    @field_validator("impersonate")
    @classmethod
    def _profile(cls, value: str) -> str:
        if value not in ("off", "auto") and value not in browser_profiles():
            raise ValueError("must be off, auto, or one of curl_cffi's browser profiles "
                             f"({', '.join(browser_profiles()[:8])} …)")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(
                ("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("data_dir", "sandbox_replay")
    @classmethod
    def _home(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @field_validator("basic_auth")
    @classmethod
    def _pairs(cls, value: list[SecretStr]) -> list[SecretStr]:
        for item in value:
            if ":" not in item.get_secret_value():
                raise ValueError("each entry must be written user:password")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.poll_min_interval > self.poll_max_interval:
            raise ValueError("poll_min_interval must not exceed poll_max_interval")
        if self.token_probe_backoff > self.token_probe_max_backoff:
            raise ValueError("token_probe_backoff must not exceed token_probe_max_backoff")
        if self.min_side > self.max_side:
            raise ValueError("min_side must not exceed max_side")
        if self.webhook_urls and self.webhook_secret is None:
            raise ValueError("webhook_urls needs webhook_secret: deliveries are signed")
        if self.operator_webhook_url and self.webhook_secret is None:
            raise ValueError("operator_webhook_url needs webhook_secret: events are signed")
        if self.providers or self.fallbacks:
            check_providers(self.providers, self.fallbacks, self.default_model,
                            self.extra_models)
        return self

    # --- derived ----------------------------------------------------------------------
    @property
    def auth_required(self) -> bool:
        return bool(self.api_keys or self.basic_auth)

    def secrets(self) -> list[str]:
        """Every secret value, for the log redactor."""
        values = [*self.api_keys, *self.basic_auth, *self.auth_tokens,
                  *(s for p in self.providers for s in p.secrets())]
        for secret in (self.cf_clearance, self.webhook_secret, self.secret_key):
            if secret is not None:
                values.append(secret)
        found = [v.get_secret_value() for v in values if v.get_secret_value()]
        for proxy in (self.proxy, self.webhook_proxy, *(p.proxy for p in self.providers)):
            if proxy is not None:          # of a proxy's URL, its credentials are secret
                parsed = proxies.parse(proxy.get_secret_value())
                found += parsed.secrets() if parsed else []
        if self.redis_url is not None:     # of Redis' URL, only its password is secret
            found.append(urlsplit(self.redis_url.get_secret_value()).password or "")
        return [v for v in found if v]


@functools.cache
def browser_profiles() -> list[str]:
    """The browser profiles curl_cffi can impersonate (``chrome``, ``safari`` …)."""
    from curl_cffi.requests.impersonate import REAL_TARGET_MAP, BrowserType

    return [*REAL_TARGET_MAP, *(b.value for b in BrowserType)]


def webhook_key(secret: SecretStr) -> bytes | None:
    """The HMAC key of a Standard Webhooks secret (``whsec_<base64>``), or None."""
    text = secret.get_secret_value()
    if not text.startswith("whsec_"):
        return None
    try:
        key = base64.b64decode(text.removeprefix("whsec_"), validate=True)
    except ValueError:
        return None
    return key if 24 <= len(key) <= 64 else None


S = TypeVar("S", bound="Section")


class Section:
    """A component's own slice of the settings: a frozen dataclass whose fields are named as
    in ``Settings``. Components take one of these (or plain arguments), never ``Settings``
    itself, so each says what it depends on and a test can build it from a few values."""

    @classmethod
    def of(cls: type[S], settings: Settings) -> S:
        return cls(**{f.name: getattr(settings, f.name)
                      for f in dataclasses.fields(cls)})  # type: ignore[arg-type]


def env_names(name: str) -> list[str]:
    extra = Settings.model_fields[name].json_schema_extra
    envs = extra.get("env", []) if isinstance(extra, dict) else []
    return [str(env) for env in envs] if isinstance(envs, list) else []


def load_settings(config_path: str | os.PathLike | None = None,
                  environ: Mapping[str, str] | None = None,
                  overrides: Mapping[str, Any] | None = None) -> Settings:
    """Build the settings: defaults ← TOML file ← environment ← ``overrides`` (CLI).

    The file is ``config_path``, else ``$ARTING_CONFIG``, else ``./arting.toml`` when it
    exists. Raises ``ConfigError`` with a message naming the offending key.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}

    path = config_path or environ.get("ARTING_CONFIG") or None
    if path is None and Path("arting.toml").is_file():
        path = "arting.toml"
    if path is not None:
        for key, value in _read_toml(Path(path)).items():
            if key in RETIRED:
                logging.getLogger(__name__).warning(
                    "`%s` in %s is no longer used (%s); remove it.", key, path, RETIRED[key])
                continue
            if key not in Settings.model_fields:
                raise ConfigError(f"Unknown setting `{key}` in {path}. "
                                  f"Known settings: {', '.join(Settings.model_fields)}.")
            values[key], origin[key] = value, f"`{key}` in {path}"

    for name in Settings.model_fields:
        for env in env_names(name):
            if environ.get(env, "") != "":
                values[name], origin[name] = environ[env], f"environment variable {env}"
                break

    for key, value in (overrides or {}).items():
        if value is not None:
            values[key], origin[key] = value, f"command-line option for `{key}`"

    try:
        return Settings(**values)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, values, origin)) from None


#: Settings that once existed, and why they are ignored now: an older arting.toml still
#: starts (with a warning) instead of stopping at an unknown key.
RETIRED = {"poll_first_delay": "the first poll is now planned from `expected_duration` "
                               "(and the durations seen), like every other poll"}


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"Config file {path} does not exist.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Config file {path} is not valid TOML: {exc}.") from None
    # Sections are only for readability: [server] port = 1 is the same as port = 1.
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key not in Settings.model_fields:
            flat.update(value)
        else:
            flat[key] = value
    return flat


def _explain(exc: ValidationError, values: Mapping[str, Any], origin: Mapping[str, str]) -> str:
    err = exc.errors()[0]
    key = str(err["loc"][0]) if err["loc"] else ""
    where = origin.get(key, f"`{key}`") if key else "the settings"
    message = str(err["msg"]).removeprefix("Value error, ")
    if not key:
        return f"Invalid settings: {message}."
    if key == "providers" and len(err["loc"]) > 1:
        return f"Invalid setting {where}: {_provider_entry(err['loc'], values)}: {message}."
    shown = "(hidden)" if key in ("api_keys", "basic_auth", "auth_tokens", "cf_clearance",
                                  "redis_url", "providers", "webhook_secret", "proxy",
                                  "webhook_proxy", "secret_key") \
        else repr(values.get(key))
    return f"Invalid setting {where}: {message} (got {shown})."


def _provider_entry(loc: tuple, values: Mapping[str, Any]) -> str:
    """``providers[1] (studio).kind``: the entry by place and name, then the field (its
    value is not shown: entries hold credentials)."""
    index = loc[1]
    entries = values.get("providers")
    name = None
    if isinstance(entries, str):
        with contextlib.suppress(ValueError):
            entries = json.loads(entries)
    if isinstance(entries, list) and isinstance(index, int) and index < len(entries) \
            and isinstance(entries[index], dict):
        name = entries[index].get("name")
    field = "".join(f".{part}" if isinstance(part, str) else f"[{part}]" for part in loc[2:])
    return f"providers[{index}]" + (f" ({name})" if isinstance(name, str) else "") + field
