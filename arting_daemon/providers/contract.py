"""The provider contract's version, its compatibility rule and the features a kind
declares: importable without the rest of the daemon (``base.py`` re-exports them)."""

from __future__ import annotations

from dataclasses import dataclass

#: The version of this contract (``major.minor``).
CONTRACT_VERSION = "1.0"


def compatible(declared: str, ours: str = CONTRACT_VERSION) -> bool:
    """Whether a kind written against contract ``declared`` runs on this daemon: the same
    major, and a minor no newer than ours."""
    try:
        major, minor = (int(part) for part in declared.split("."))
        our_major, our_minor = (int(part) for part in ours.split("."))
    except ValueError:
        return False
    return major == our_major and minor <= our_minor


@dataclass(frozen=True)
class Features:
    """What a kind does beyond text-to-image, as it declares it (listed by
    ``arting-daemon providers``; ``Provider.require`` has the last word per entry)."""

    img2img: bool = False
    upscale: bool = False
    loras: bool = False
    #: The sizes it makes (``"1024x1024"``); empty: any the request's rules allow.
    sizes: tuple[str, ...] = ()
    #: The most images one job may ask for (None: as many as the rules allow).
    max_n: int | None = None

    def listed(self) -> list[str]:
        """As a short list of words: ``img2img``, ``n<=4``, ``sizes:1024x1024,…``."""
        out = [name for name in ("img2img", "upscale", "loras") if getattr(self, name)]
        if self.sizes:
            out.append("sizes:" + ",".join(self.sizes))
        if self.max_n is not None:
            out.append(f"n<={self.max_n}")
        return out

