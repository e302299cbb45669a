"""OpenAI's model list: ``GET /v1/models`` and ``GET /v1/models/{id}``.

Lists every provider's models by id (``owned_by``: the provider), and the OpenAI names
clients hard-code (they stand for the configured default model), each as
``{"id", "object", "created", "owned_by"}``.
Every id serves both the Images API and chat completions (chat UIs pick from this list).
"""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import Field

from ..catalog import OPENAI_MODEL_NAMES
from ..errors import ModelNotFound
from ..generation import Catalog
from ..openapi import operation
from ..state import CATALOG
from .http import Answer, reply

CREATED = 1760832000  # Arting publishes no dates; a fixed one keeps the list stable


class ModelEntry(Answer):
    id: str
    object: Literal["model"] = "model"
    created: int = CREATED
    owned_by: str = Field(description="The provider offering it (`arting` …), or "
                                      "`arting-2api` for the OpenAI names.")


class ModelList(Answer):
    object: Literal["list"] = "list"
    data: list[ModelEntry]


def model_entries(catalog: Catalog) -> list[ModelEntry]:
    entries = [ModelEntry(id=model_id, owned_by=catalog.owners[model_id])
               for model_id in catalog.models]
    entries += [ModelEntry(id=name, owned_by="arting-2api") for name in OPENAI_MODEL_NAMES]
    return entries


@operation("The models", "Every provider's models by id, and the OpenAI names clients hard-code "
           "(they stand for `default_model`). Every id works for images and for chat.",
           answers={200: ModelList})
async def list_models(request: web.Request) -> web.Response:
    return reply(ModelList(data=model_entries(request.config_dict[CATALOG])))


@operation("A model", answers={200: ModelEntry})
async def get_model(request: web.Request) -> web.Response:
    wanted = request.match_info["model"]
    for entry in model_entries(request.config_dict[CATALOG]):
        if entry.id == wanted:
            return reply(entry)
    raise ModelNotFound(f"The model `{wanted}` does not exist.", param="model")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/models", list_models)
    app.router.add_get("/models/{model:.+}", get_model)
