"""Upscaling: the ``Upscale`` request facades build, and the rules for it.

Arting's image-enhance makes a picture 2 or 4 times wider and taller (``docs/protocol/arting.md``
§11, LIKELY). An upscale is a job like a generation — queued, followed with progress,
cancelled, journaled and resumed by the runner — which the provider runs its own way.
Its pictures are stored images, named by hash: what a client sends is stored first, so
nothing a client names is ever fetched.

A1111 asks for any factor, or an exact size: ``arting_scale`` picks the scale that gets
there in one pass and ``imaging.resize`` makes the result exact, as A1111 resizes after
its upscaler.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

from .errors import InvalidRequest
from .generation import Generation

#: The factors image-enhance offers.
SCALES = (2, 4)


class Origin(BaseModel):
    """Where a stored picture was made, as the picture itself says (``provenance.py``):
    a provider that upscales only its own pictures (Midjourney) finds them by it."""

    model_config = ConfigDict(frozen=True)

    provider: str = Field(max_length=64)
    #: Which upstream, as a short hash of its URL (a relay's pictures are not ours).
    upstream: str = Field(max_length=64)
    #: The provider's own reference (Midjourney: ``<task id>/<quadrant>``).
    ref: str = Field(max_length=200)


class Source(BaseModel):
    """A stored picture to upscale; ``seed`` is the one it was generated with, if known."""

    model_config = ConfigDict(frozen=True)

    hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    seed: int = -1
    origin: Origin | None = None


class Upscale(BaseModel):
    """An upscale job's request: pictures, one factor, image-enhance's ``version``.

    Besides its fields it answers what the runner asks of any job's request (``seeds``,
    ``mask``, ``features`` ...), as a ``Generation`` does."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["upscale"] = "upscale"
    images: tuple[Source, ...] = Field(min_length=1)
    scale: Literal[2, 4]
    version: str

    init_image: ClassVar[None] = None
    mask: ClassVar[None] = None
    is_img2img: ClassVar[bool] = False
    features: ClassVar[tuple[str, ...]] = ("upscale",)

    @property
    def n(self) -> int:
        return len(self.images)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def model(self) -> str:
        """What it counts under in usage, and learns its durations under (with the first
        picture's size), as a generation does under its model."""
        return f"image-enhance {self.version} {self.scale}x"

    @property
    def width(self) -> int:
        return self.images[0].width

    @property
    def height(self) -> int:
        return self.images[0].height

    def seeds(self) -> list[int]:
        return [source.seed for source in self.images]


#: What a job asks for: a generation, or an upscale.
JobRequest = Generation | Upscale


def job_request(data: dict[str, Any]) -> JobRequest:
    """A job's request from its JSON form (journal records)."""
    if data.get("kind") == "upscale":
        return Upscale.model_validate(data)
    return Generation.model_validate(data)


def check_request(count: int, scale: Any, max_images: int, param: str = "images") -> None:
    """What can be checked before the pictures are read: their number, the factor."""
    if scale not in SCALES or isinstance(scale, bool):
        raise InvalidRequest(f"scale must be 2 or 4 (Arting's image-enhance offers those); "
                             f"got {scale!r}.", param="scale")
    if not 1 <= count <= max_images:
        raise InvalidRequest(f"Send 1 to {max_images} images to upscale (max_images); got "
                             f"{count}.", param=param)


def build_upscale(sources: list[Source], scale: Any, version: str, max_images: int,
                  max_pixels: int, param: str = "images") -> Upscale:
    """Check an upscale against the limits (``max_pixels``: ``max_upscale_pixels``)."""
    check_request(len(sources), scale, max_images, param)
    for source in sources:
        if source.width * scale * source.height * scale > max_pixels:
            raise too_large(f"A {source.width}x{source.height} picture upscaled {scale}×",
                            max_pixels, param)
    return Upscale(images=tuple(sources), scale=scale, version=version)


def too_large(what: str, max_pixels: int, param: str) -> InvalidRequest:
    return InvalidRequest(f"{what} would have more than {max_pixels / 1e6:.1f} megapixels "
                          f"({max_pixels} pixels), the most an upscale may make "
                          "(max_upscale_pixels); ask for a smaller size.", param=param)


def arting_scale(factor: float) -> int:
    """The image-enhance scale for an upscale by ``factor``: the smallest that reaches it
    in one pass, else the largest (the rest is a resize)."""
    if factor <= 0:
        raise InvalidRequest("The upscale factor must be positive.", param="upscaling_resize")
    return next((s for s in SCALES if s >= factor - 1e-9), SCALES[-1])
