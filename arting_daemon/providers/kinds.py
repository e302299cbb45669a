"""The provider kinds: found as plugins, the built-in ones included.

A kind is an entry point in the group ``arting_2api.providers`` (in the package's
``pyproject.toml``: ``comfyui = "arting_2api_comfyui:KIND"``), naming a ``ProviderKind``:
its provider's class, the pydantic model of the ``[[providers]]`` fields only it takes
(validated when the settings load, with the rest of the entry), the contract version it
was written against (``base.CONTRACT_VERSION``), what it offers and how it is made.

``installed()`` loads them once. A plugin that fails to import, names something else,
or was written against an incompatible contract is left out with one line saying so
(``problems``: logged at start, listed by ``arting-daemon providers``); the daemon starts
with the rest. A configured kind that is missing stops start-up with one line naming it
and the package that provides it, when known.
"""

from __future__ import annotations

import functools
import importlib.metadata as metadata
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from .contract import CONTRACT_VERSION, Features, compatible

if TYPE_CHECKING:       # (not build.py's Services: the runner's imports reach this module)
    from ..provider_config import ProviderConfig
    from .base import Provider

GROUP = "arting_2api.providers"
#: The packages known to provide a kind, for the message when it is not installed.
KNOWN_PACKAGES = {"comfyui": "arting-2api-comfyui"}
#: The daemon's own kinds (``builtin.py``): missing, the daemon was not installed.
OWN_KINDS = ("arting", "a1111", "openai", "midjourney", "stability")


class NoSettings(BaseModel):
    """The settings model of a kind that takes no fields of its own."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class ProviderKind:
    """What an entry point names: a kind of provider, and how the daemon makes one."""

    #: The class of its providers (a ``base.Provider``).
    provider: type[Provider]
    #: ``(Services, ProviderConfig)`` → an async context manager giving the provider
    #: (closing what it holds on exit). The entry's own fields are ``cfg.options``;
    #: ``Services`` is ``build.py``'s.
    make: Callable[[Any, ProviderConfig], AbstractAsyncContextManager[Provider]]
    #: Its own ``[[providers]]`` fields.
    settings: type[BaseModel] = NoSettings
    #: The contract version it was written against.
    contract: str = CONTRACT_VERSION
    #: What it offers for ``models = "*"`` when that is fixed: ids → names (empty: read
    #: from the upstream, or the entry's list).
    models: dict[str, str] = field(default_factory=dict)
    #: How it takes its credentials, for messages (``api_key``).
    credentials: str = "no credentials"
    #: Where it is unless ``base_url`` says otherwise (None: ``base_url`` is required).
    base_url: str | None = None
    #: What it does beyond text-to-image; ``img2img`` is also the entry's default.
    features: Features = Features()
    #: Filled in when found: its entry point's name, its distribution and version.
    name: str = ""
    package: str = ""
    version: str = ""

    @property
    def img2img(self) -> bool:
        return self.features.img2img

    def own_keys(self) -> set[str]:
        """The keys of its fields as an entry may spell them (aliases too)."""
        keys = set()
        for name, spec in self.settings.model_fields.items():
            keys.add(name)
            choices = getattr(spec.validation_alias, "choices", ())
            keys.update(c for c in choices if isinstance(c, str))
        return keys

    def describe(self) -> dict[str, Any]:
        """What ``arting-daemon providers`` shows of it."""
        return {"kind": self.name, "package": self.package, "version": self.version,
                "contract": self.contract, "features": self.features.listed()}


@dataclass
class Installed:
    """The kinds found, and one line for each plugin left out."""

    kinds: dict[str, ProviderKind] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    #: Kinds whose plugin was left out → the line saying why.
    broken: dict[str, str] = field(default_factory=dict)

    def get(self, kind: str) -> ProviderKind | None:
        return self.kinds.get(kind)

    def __getitem__(self, kind: str) -> ProviderKind:
        return self.kinds[kind]

    def missing(self, kind: str) -> str:
        """Why ``kind`` cannot be used, in one line that says what to do."""
        if kind in self.broken:
            return f"the provider kind `{kind}` is installed but left out: {self.broken[kind]}"
        if kind in OWN_KINDS:
            return (f"the daemon's own provider kind `{kind}` is not registered: install "
                    "arting-2api (python install.py, or pip install .) so that its entry "
                    "points exist")
        package = KNOWN_PACKAGES.get(kind)
        where = f"; install the package that provides it: pip install {package}" if package \
            else "; install the plugin package that provides it"
        return (f"no provider kind `{kind}` is installed{where} (installed: "
                f"{', '.join(sorted(self.kinds))})")


def declared() -> list[metadata.EntryPoint]:
    """The group's entry points of every distribution on the path, each once: not only
    the first of each name (``entry_points()``), so an old build's metadata ahead on the
    path (an ``.egg-info`` in the working directory) does not hide the installed one's."""
    seen: set[tuple[str, str]] = set()
    points = []
    for dist in metadata.distributions():
        for point in dist.entry_points.select(group=GROUP):
            if (point.name, point.value) not in seen:
                seen.add((point.name, point.value))
                points.append(point)
    return points


def load(entry_points: list[metadata.EntryPoint] | None = None) -> Installed:
    """Load every kind of the group (``entry_points``: those given instead)."""
    from .base import Provider      # the daemon's modules import this one: not at the top

    found = Installed()
    for point in declared() if entry_points is None else entry_points:
        dist = getattr(point, "dist", None)
        package = dist.metadata["Name"] if dist is not None else ""
        version = dist.version if dist is not None else ""
        who = f"provider plugin `{point.name}`" + (f" ({package} {version})" if package else "")
        try:
            kind = point.load()
        except Exception as exc:     # a plugin's bug must not stop the daemon
            said = " ".join(str(exc).split())[:200]
            _left_out(found, point.name, f"{who} failed to import ({type(exc).__name__}: "
                                         f"{said}); it is left out")
            continue
        if not isinstance(kind, ProviderKind):
            _left_out(found, point.name, f"{who} names {type(kind).__name__}, not a "
                                         "ProviderKind; it is left out")
            continue
        if not (isinstance(kind.provider, type) and issubclass(kind.provider, Provider)):
            _left_out(found, point.name, f"{who} names a provider that is no "
                                         "arting_daemon.providers.base.Provider; it is left out")
            continue
        if not compatible(kind.contract):
            _left_out(found, point.name, f"{who} was written for provider contract "
                                         f"{kind.contract}; this daemon has {CONTRACT_VERSION} "
                                         "(the same major, a minor no newer); it is left out "
                                         "(install a version made for this daemon)")
            continue
        if point.name in found.kinds:
            found.problems.append(f"{who} is a second kind `{point.name}`; the first found "
                                  f"({found.kinds[point.name].package}) is kept")
            continue
        found.kinds[point.name] = replace(kind, name=point.name, package=package,
                                          version=version)
    return found


def _left_out(found: Installed, name: str, line: str) -> None:
    found.problems.append(line)
    found.broken.setdefault(name, line)


@functools.cache
def installed() -> Installed:
    """The kinds of this environment, loaded once."""
    return load()
