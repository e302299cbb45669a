"""The sandbox's object storage: presigned PUT URLs and public GET URLs, as OSS and S3 work.

``POST /api/cg/get_oss_signed_urls`` hands out one ``{"put", "get"}`` pair per suffix
asked for (``docs/protocol/arting.md`` §11). The ``put`` URL carries an expiry and a signature
over the method, the Content-Type the object must be sent with, the expiry and the key,
so a PUT with another Content-Type, another key or after the expiry is refused with the
storage's own XML error, as OSS and S3 refuse them. It needs no ``Authorization``: the
signature is the permission. The ``get`` URL serves the object publicly once it is there.
Image-to-image creates and image-enhance tasks read their ``image_url`` from here (or a
data: URL): the sandbox fetches nothing from anywhere else.
"""

from __future__ import annotations

import hashlib
import hmac
import random
from dataclasses import dataclass
from urllib.parse import quote

from aiohttp import web

from ..clock import SYSTEM, Clock

#: Suffixes the storage takes, and the Content-Type each upload must be sent with.
SUFFIX_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg",
                "webp": "image/webp", "gif": "image/gif"}
PUT_PREFIX = "/oss/"
GET_PREFIX = "/cdn/"


@dataclass
class StoredObject:
    data: bytes
    content_type: str
    stored_at: float


class StorageRefusal(Exception):
    """A refused PUT, answered the way the storage answers: status, code, message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class ObjectStorage:
    """Objects by key; signing is keyed by the sandbox's seed, so runs repeat exactly."""

    def __init__(self, clock: Clock = SYSTEM) -> None:
        self.clock = clock
        self.objects: dict[str, StoredObject] = {}

    def clear(self) -> None:
        self.objects.clear()

    def sign(self, base: str, suffix: str, rng: random.Random, seed: int,
             ttl: float) -> dict[str, str]:
        """A fresh key's ``{"put", "get"}`` URL pair under ``base``."""
        key = f"uploads/{rng.getrandbits(64):016x}.{suffix}"
        expires = int(self.clock.time() + ttl)
        signature = _signature(seed, key, SUFFIX_TYPES[suffix], expires)
        return {"put": f"{base}{PUT_PREFIX}{key}?OSSAccessKeyId=sandbox&Expires={expires}"
                       f"&Signature={quote(signature)}",
                "get": f"{base}{GET_PREFIX}{key}"}

    def put(self, key: str, query, content_type: str, data: bytes, seed: int) -> StoredObject:
        """Store ``data`` under ``key`` if the URL's signature allows it; else raise."""
        expires, signature = query.get("Expires", ""), query.get("Signature", "")
        if not expires.isdigit() or not signature:
            raise StorageRefusal(403, "AccessDenied", "Anonymous access is forbidden for "
                                                      "this operation.")
        suffix = key.rpartition(".")[2]
        wanted = SUFFIX_TYPES.get(suffix, "")
        if not hmac.compare_digest(signature, _signature(seed, key, content_type, int(expires))):
            raise StorageRefusal(403, "SignatureDoesNotMatch",
                                 "The request signature we calculated does not match the "
                                 f"signature you provided (send Content-Type: {wanted}).")
        if int(expires) < self.clock.time():
            raise StorageRefusal(403, "AccessDenied", "Request has expired.")
        stored = StoredObject(data, content_type, self.clock.time())
        self.objects[key] = stored
        return stored

    def key_of(self, url: str, bases: set[str]) -> str | None:
        """The key a ``get`` URL under one of ``bases`` names, else None."""
        for base in bases:
            prefix = base + GET_PREFIX
            if url.startswith(prefix):
                return url[len(prefix):].partition("?")[0]
        return None


def _signature(seed: int, key: str, content_type: str, expires: int) -> str:
    secret = hashlib.sha256(f"arting-sandbox-storage:{seed}".encode()).digest()
    text = f"PUT\n\n{content_type}\n{expires}\n/{key}"
    return hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()


def xml_error(status: int, code: str, message: str, request_id: str) -> web.Response:
    """The storage's error answer: XML, as OSS and S3 send it."""
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error>\n'
            f"  <Code>{code}</Code>\n  <Message>{message}</Message>\n"
            f"  <RequestId>{request_id}</RequestId>\n</Error>\n")
    return web.Response(status=status, text=body, content_type="application/xml")
