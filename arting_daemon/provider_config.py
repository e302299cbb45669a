"""``[[providers]]`` and ``[fallbacks]`` in ``arting.toml``: where images are made.

With neither table the daemon has one provider, Arting, made from the flat settings
(``base_url``, ``auth_tokens``, ``img2img`` …), exactly as before providers existed.
Each ``[[providers]]`` entry adds one; an entry named ``arting`` replaces the implicit
Arting provider (its unset fields still come from the flat settings).

A provider offers its ``models``: a list of ids, or ``"*"`` for its own catalogue (Arting's
built-in list, an A1111's checkpoints, an OpenAI server's ``/models``, the fixed lists of
Midjourney and Stability AI), each id under the provider's ``prefix`` (for a catalogue
read from the upstream, ``<name>/`` unless set). ``[fallbacks]`` maps a model id (or
``"*"``, every model without its own list) to where its jobs go when its provider
fails: model ids, or ``<provider>/*`` for that provider's default model. A ``kind`` is
any installed one (``providers/kinds.py``: the built-in kinds and plugins); a kind's own
fields are checked by its own settings model, in the same entry.

Everything here is checked when the settings load, so a mistake stops start-up with one
line naming the provider and the field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (BaseModel, ConfigDict, Field, ModelWrapValidatorHandler, PrivateAttr,
                      SecretStr, ValidationError, field_validator, model_validator)

from . import catalog
from .providers import kinds as provider_kinds

#: The implicit provider's name: the flat settings describe it.
ARTING = "arting"
#: Fields only some kinds take, and the kinds that take them.
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "auth_tokens": ("arting",),
    "username": ("a1111",),
    "password": ("a1111",),
    "api_key": ("openai",),
    "response_format": ("openai",),
    "extras": ("openai",),
    "image_hosts": ("openai",),
}


def credentials(kind: str) -> str:
    """What ``kind`` takes its credentials as, for the advice in errors."""
    spec = provider_kinds.installed().get(kind)
    return spec.credentials if spec is not None else "its credentials"


def http_url(value: str | None) -> str | None:
    if value is None:
        return None
    if not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return value.rstrip("/")


class ProviderConfig(BaseModel):
    """One ``[[providers]]`` entry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    #: An installed kind (``arting-daemon providers`` lists them).
    kind: str
    #: How messages and the web page name it (default: the name; Arting: "Arting").
    label: str | None = Field(None, max_length=40)
    base_url: str | None = None
    models: list[str] | Literal["*"] = "*"
    prefix: str | None = Field(None, pattern=r"^$|^[A-Za-z0-9][A-Za-z0-9._-]*/$")
    #: The model "<name>/*" stands for (A1111: its loaded checkpoint when unset).
    default_model: str | None = None
    #: Jobs this provider works on at once (A1111 runs one at a time: default 1).
    max_jobs: int | None = Field(None, ge=1)
    free_to_repeat: bool = False
    img2img: bool | None = None
    #: Seconds one generation may take here before the job falls back (A1111, OpenAI).
    timeout: float | None = Field(None, gt=0)
    auth_tokens: list[SecretStr] | None = None
    username: str | None = None
    password: SecretStr | None = None
    api_key: SecretStr | None = None
    response_format: Literal["b64_json", "url"] = "b64_json"
    #: Send Arting's extras (seed, steps, negative prompt, LoRAs …) as extra fields, as
    #: another arting-2api daemon understands them; strict OpenAI servers refuse them.
    extras: bool = False
    #: Hosts URL answers may be downloaded from besides ``base_url``'s own.
    image_hosts: list[str] = []
    #: Its own proxy (as the flat ``proxy``; ``direct``: none). Unset: the daemon's.
    proxy: SecretStr | None = None
    #: The fields of a kind that has its own (``providers/kinds.py``), as its model
    #: validated them (None for the other kinds): ``options``.
    _options: Any = PrivateAttr(None)

    @model_validator(mode="wrap")
    @classmethod
    def _own_fields(cls, data: Any, handler: ModelWrapValidatorHandler[ProviderConfig]
                    ) -> ProviderConfig:
        """Take the fields of the entry's kind out for its own model to validate, and
        name the kind a field of another kind belongs to; a kind not installed stops
        here, named with the package that provides it."""
        if not isinstance(data, dict):
            return handler(data)
        kinds = provider_kinds.installed()
        kind = data.get("kind")
        spec = kinds.get(kind) if isinstance(kind, str) else None
        if isinstance(kind, str) and spec is None:
            raise ValueError(kinds.missing(kind))
        own = spec.own_keys() if spec is not None else set()
        for key in data:
            if key in own or key in cls.model_fields:
                continue
            takers = [k for k, other in kinds.kinds.items() if key in other.own_keys()]
            if takers:
                raise ValueError(f"`{key}` is for kind {' or '.join(takers)}; a provider of "
                                 f"kind {kind} does not take it")
        options = None
        if spec is not None:
            try:
                options = spec.settings.model_validate({k: data[k] for k in own if k in data})
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(str(part) for part in err["loc"])
                raise ValueError(f"`{where}`: {err['msg']}") from None
        config = handler({k: v for k, v in data.items() if k not in own})
        config._options = options
        return config

    @property
    def options(self) -> Any:
        return self._options

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return http_url(value)

    @field_validator("proxy")
    @classmethod
    def _proxy(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            from .transport.proxies import parse
            parse(value.get_secret_value())     # raises, saying what is wrong
        return value

    @field_validator("auth_tokens", "image_hosts", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("models")
    @classmethod
    def _models(cls, value: list[str] | str) -> list[str] | str:
        if isinstance(value, list) and any(not m.strip() or m == "*" for m in value):
            raise ValueError('list model ids, or write "*" (not in a list) for the '
                             "provider's own catalogue")
        return value

    @model_validator(mode="after")
    def _kind(self) -> ProviderConfig:
        for field, kinds in KIND_FIELDS.items():
            if field in self.model_fields_set and self.kind not in kinds:
                raise ValueError(f"`{field}` is for kind {' or '.join(kinds)}; a provider of "
                                 f"kind {self.kind} takes {credentials(self.kind)}")
        spec = provider_kinds.installed().get(self.kind)
        if self.kind != "arting" and self.base_url is None and not (spec and spec.base_url):
            raise ValueError(f"a provider of kind {self.kind} needs `base_url`")
        if (self.username is None) != (self.password is None):
            raise ValueError("give both `username` and `password` (HTTP Basic), or neither")
        return self

    # --- what it offers ------------------------------------------------------------------

    @property
    def title(self) -> str:
        return self.label or ("Arting" if self.name == ARTING else self.name)

    @property
    def url(self) -> str:
        """``base_url``, or where the kind is unless told (Stability AI's API)."""
        url = self.base_url or provider_kinds.installed()[self.kind].base_url
        assert url is not None, "checked when the settings load"
        return url

    @property
    def model_prefix(self) -> str:
        """Catalogues read from the upstream are offered under ``<name>/`` unless told
        otherwise; listed ids, the implicit Arting provider's and the fixed catalogues of
        Midjourney and Stability AI are offered as they are."""
        if self.prefix is not None:
            return self.prefix
        fixed = self.name == ARTING or bool(provider_kinds.installed()[self.kind].models)
        return f"{self.name}/" if self.models == "*" and not fixed else ""

    @property
    def takes_img2img(self) -> bool:
        """As the kind declares (A1111 and Stability AI have img2img; an OpenAI server's
        edits and Midjourney's image prompts are off unless said); Arting's follow the flat
        ``img2img`` setting, decided where the provider is made."""
        if self.img2img is not None:
            return self.img2img
        return provider_kinds.installed()[self.kind].img2img

    @property
    def jobs_at_once(self) -> int | None:
        return self.max_jobs if self.max_jobs is not None else \
            (1 if self.kind == "a1111" else None)

    def secrets(self) -> list[SecretStr]:
        own = getattr(self.options, "api_key", None)
        return [s for s in (*(self.auth_tokens or ()), self.password, self.api_key, own) if s]


def implicit_arting() -> ProviderConfig:
    return ProviderConfig(name=ARTING, kind="arting")


def effective(providers: list[ProviderConfig]) -> list[ProviderConfig]:
    """The providers in routing order: Arting first (the implicit one, unless an entry
    named ``arting`` stands in for it), then the rest as listed."""
    named = {p.name: p for p in providers}
    return [named.get(ARTING) or implicit_arting(),
            *(p for p in providers if p.name != ARTING)]


def check(providers: list[ProviderConfig], fallbacks: dict[str, list[str]],
          default_model: str, extra_models: list[str]) -> None:
    """Names unique, each model id offered once, the default model offered, and every
    fallback pointing somewhere: raises ``ValueError`` with the first problem."""
    seen: set[str] = set()
    for p in providers:
        if p.name in seen:
            raise ValueError(f"two providers are named `{p.name}`")
        seen.add(p.name)
        if p.name == ARTING and p.kind != "arting":
            raise ValueError("the provider named `arting` stands for Arting: its kind is "
                             "arting (give the other one another name)")
        if p.kind == "arting" and p.name != ARTING and not p.auth_tokens:
            raise ValueError(f"provider `{p.name}` (kind arting) needs its own `auth_tokens`; "
                             "the flat `auth_tokens` belong to the provider `arting`")
    chain = effective(providers)
    table = Offers(chain, extra_models, default_model)
    if table.owner(default_model) is None:
        raise ValueError(f"default_model `{default_model}` is offered by no provider")
    names = {p.name for p in chain}
    for key, targets in fallbacks.items():
        if key != "*" and table.owner(key) is None:
            raise ValueError(f"fallbacks: `{key}` is no model a provider offers (write a "
                             'model id, or "*" for every model)')
        for target in targets:
            if target.endswith("/*"):
                if target[:-2] not in names:
                    raise ValueError(f"fallbacks.{key}: `{target}` names no provider; "
                                     f"providers: {', '.join(sorted(names))}")
            elif table.owner(target) is None:
                raise ValueError(f"fallbacks.{key}: `{target}` is no model a provider "
                                 "offers (write a model id, or <provider>/* for a "
                                 "provider's default model)")


class Offers:
    """Which provider offers which model id, as far as is known before asking any:
    listed ids, Arting's built-in catalogue, and the prefixes of catalogues."""

    def __init__(self, chain: list[ProviderConfig], extra_models: list[str],
                 default_model: str) -> None:
        self.ids: dict[str, list[str]] = {}
        self.prefixes: dict[str, str] = {}          # lower-case prefix → provider
        owners: dict[str, str] = {}
        for p in chain:
            self.ids[p.name] = listed(p, extra_models)
            if p.models == "*" and p.model_prefix:
                self.prefixes[p.model_prefix.lower()] = p.name
            for model_id in self.ids[p.name]:
                other = owners.setdefault(model_id.lower(), p.name)
                if other != p.name:
                    raise ValueError(f"the model `{model_id}` is offered by both `{other}` "
                                     f"and `{p.name}`; give one of them a `prefix`")
        self._owners = owners
        home = chain[0]
        if self.owner(default_model) is None and home.kind == "arting" and \
                home.models == "*" and not home.model_prefix:
            # As before providers: a default model Arting's list lacks is an Arting id.
            self.ids[home.name].append(default_model)
            owners[default_model.lower()] = home.name

    def owner(self, model_id: str) -> str | None:
        lowered = model_id.lower()
        if lowered in self._owners:
            return self._owners[lowered]
        return next((name for prefix, name in self.prefixes.items()
                     if lowered.startswith(prefix) and len(lowered) > len(prefix)), None)


def listed(p: ProviderConfig, extra_models: list[str]) -> list[str]:
    """The ids a provider offers that are known before it is asked: its list, or for an
    Arting catalogue the built-in ids and ``extra_models``, or a kind's fixed catalogue."""
    if isinstance(p.models, list):
        return [p.model_prefix + m for m in p.models]
    if own := provider_kinds.installed()[p.kind].models:
        return [p.model_prefix + m for m in own]
    if p.kind != "arting":
        return []
    return [p.model_prefix + m for m in dict.fromkeys([*catalog.MODELS, *extra_models])]
