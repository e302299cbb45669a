"""OpenAI's model list: ``GET /v1/models`` and ``GET /v1/models/{id}``.

Lists every provider's models by id (``owned_by``: the provider), and the OpenAI names
clients hard-code (they stand for the configured default model), each as
``{"id", "object", "created", "owned_by"}``.
Every id serves both the Images API and chat completions (chat UIs pick from this list).
"""

from __future__ import annotations

from aiohttp import web

from ..catalog import OPENAI_MODEL_NAMES
from ..errors import ModelNotFound
from ..generation import Catalog
from ..state import CATALOG

CREATED = 1760832000  # Arting publishes no dates; a fixed one keeps the list stable


def model_entries(catalog: Catalog) -> list[dict]:
    entries = [{"id": model_id, "object": "model", "created": CREATED,
                "owned_by": catalog.owner(model_id)} for model_id in catalog.models]
    entries += [{"id": name, "object": "model", "created": CREATED,
                 "owned_by": "arting-2api"} for name in OPENAI_MODEL_NAMES]
    return entries


async def list_models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list",
                              "data": model_entries(request.config_dict[CATALOG])})


async def get_model(request: web.Request) -> web.Response:
    wanted = request.match_info["model"]
    for entry in model_entries(request.config_dict[CATALOG]):
        if entry["id"] == wanted:
            return web.json_response(entry)
    raise ModelNotFound(f"The model `{wanted}` does not exist.", param="model")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/models", list_models)
    app.router.add_get("/models/{model:.+}", get_model)
