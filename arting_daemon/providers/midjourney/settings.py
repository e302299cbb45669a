"""The ``[[providers]]`` fields only a Midjourney provider takes.

Midjourney itself has no public API: programs reach it through a midjourney-proxy
server (novicezk's, trueai-org's re-implementation, or a gateway such as new-api that
relays it). ``base_url`` is that server (with or without its ``/mj`` path).
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr

#: The models a Midjourney provider offers: the bot each one means.
MODELS = {"midjourney": "Midjourney", "niji": "Niji Journey"}

_FLAG_VALUE = r"^[0-9A-Za-z][0-9A-Za-z.]{0,9}$"


class MidjourneySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    #: The proxy's secret, sent as ``mj-api-secret`` (its ``mj.api-secret``; a gateway's key).
    api_key: SecretStr | None = Field(None, validation_alias=AliasChoices("api_key",
                                                                         "api_secret"))
    #: ``--v`` added to prompts for the model ``midjourney`` (unset: the account's default).
    version: str | None = Field(None, pattern=_FLAG_VALUE)
    #: ``--niji`` added to prompts for the model ``niji`` (unset: plain ``--niji``).
    niji_version: str | None = Field(None, pattern=_FLAG_VALUE)
    #: More parameters for every prompt (``--relax --stylize 250``); one the prompt
    #: carries itself is left out.
    flags: str = Field("", max_length=200)
    #: Offer upscaling: ``U1``-``U4`` on the pictures this provider made.
    upscale: bool = True
    #: How an ``U`` action is sent: ``change`` (``/mj/submit/change``, every proxy) or
    #: ``action`` (``/mj/submit/action`` with the button's ``customId``: the plus API).
    actions: Literal["change", "action"] = "change"
    #: Refresh a queued task's place from ``GET /mj/task/queue`` as it is polled
    #: (novicezk's proxy has it; one that answers it with no list is not asked again).
    queue_list: bool = True
