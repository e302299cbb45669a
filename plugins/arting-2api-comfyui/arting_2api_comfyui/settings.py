"""The ``[[providers]]`` fields only a ComfyUI provider takes."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from . import workflow


class ComfyUISettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Sent as ``Authorization: Bearer`` (ComfyUI itself has no login; a proxy in front
    #: of it may want one).
    api_key: SecretStr | None = None
    #: A workflow in ComfyUI's API format with placeholders (``workflow.py``); unset: the
    #: built-in text-to-image graph.
    workflow: Path | None = None
    #: ComfyUI's sampler and scheduler for the placeholders ``$sampler``, ``$scheduler``.
    sampler: str = Field("euler", min_length=1, max_length=64)
    scheduler: str = Field("normal", min_length=1, max_length=64)

    @field_validator("workflow")
    @classmethod
    def _workflow(cls, value: Path | None) -> Path | None:
        if value is not None:
            try:
                workflow.load(value)
            except (OSError, ValueError) as exc:
                raise ValueError(f"cannot use the workflow {value}: {exc}") from None
        return value
