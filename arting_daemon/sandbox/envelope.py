"""Arting's JSON envelope and the error codes the sandbox answers with.

Only ``100000`` (success) and ``100905 "Model not supported"`` have been seen in
public code (``docs/protocol/arting.md`` §2.3); every other code here is INVENTED so the
daemon has something stable to test against:

======  ==================================  ===============================================
code    message (example)                   when
======  ==================================  ===============================================
100000  Request Success                     success
100400  body must be a JSON object          body is not JSON, or not an object
100401  invalid token / token expired /    ``Authorization`` refused (same code, three
        Authorization failed                messages; the last for none at all, §11)
100404  task not found / not found          unknown ``request_id``, ``task_id``, path or image
100405  method not allowed                  wrong HTTP method on a known path (HTTP 405)
100429  too many requests                   rate limited (HTTP 429, ``Retry-After``)
100451  content not allowed                 NSFW prompt with ``is_nsfw: false`` (refuse mode)
100460  free credits used up                ``quota`` fault
100461  insufficient balance                the identity's balance cannot pay for the job
100500  generation failed                   ``fail_code`` fault; default of ``http_error``
100900  <field> must be <type>              a field is missing or has the wrong JSON type
100901  prompt must not be empty            empty or blank ``prompt``
100902  samples must be between 1 and N     ``samples`` out of range
100903  width must be between A and B       ``width``/``height`` out of range
100904  lora_weight ... lora_ids            LoRA lists malformed or of different lengths
100905  Model not supported                 ``model_id`` not in the allow-list (seen in L)
100906  image_url ...                       source image is not a data: URL or an upload
100907  strength must be between 0 and 1    img2img ``strength`` out of range
100908  f_suffixs ...                       signed URLs asked for no or an unknown suffix
100909  scale must be one of 2, 4           image-enhance ``scale`` not offered
100910  version not supported               image-enhance ``version`` not offered
======  ==================================  ===============================================

Validation and not-found errors come as HTTP 200 unless ``errors_as_http`` (then 400,
or 404 for not-found); token errors as HTTP 200 unless ``auth_error_http`` (then 401).
The object storage behind signed URLs answers in its own way (``storage``): XML errors.
"""

from __future__ import annotations

OK = 100000
BAD_BODY = 100400
BAD_TOKEN = 100401
NOT_FOUND = 100404
BAD_METHOD = 100405
TOO_MANY = 100429
CONTENT_REFUSED = 100451
QUOTA = 100460
NO_BALANCE = 100461
GENERATION_FAILED = 100500
BAD_TYPE = 100900
EMPTY_PROMPT = 100901
BAD_SAMPLES = 100902
BAD_SIZE = 100903
BAD_LORA = 100904
BAD_MODEL = 100905
BAD_IMAGE_URL = 100906
BAD_STRENGTH = 100907
BAD_SUFFIX = 100908
BAD_SCALE = 100909
BAD_VERSION = 100910

SUCCESS_MESSAGE = "Request Success"
INVALID_TOKEN = "invalid token"
EXPIRED_TOKEN = "token expired"
NO_IDENTITY = "Authorization failed"


def success(data: object) -> dict:
    return {"code": OK, "message": SUCCESS_MESSAGE, "data": data}


def failure(code: int, message: str) -> dict:
    return {"code": code, "message": message, "data": None}


class ApiError(Exception):
    """An answer with a non-100000 code; ``http_status`` applies when errors go as HTTP."""

    http_status = 400

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class NotFoundError(ApiError):
    http_status = 404

    def __init__(self, message: str = "task not found") -> None:
        super().__init__(NOT_FOUND, message)


class AuthError(ApiError):
    """A refused token; its HTTP status follows ``auth_error_http``, not ``errors_as_http``."""

    http_status = 401

    def __init__(self, message: str) -> None:
        super().__init__(BAD_TOKEN, message)


class RateLimited(ApiError):
    """Too many requests in the window: always HTTP 429 with ``Retry-After``."""

    http_status = 429

    def __init__(self, retry_after: float) -> None:
        super().__init__(TOO_MANY, "too many requests")
        self.retry_after = retry_after
