"""MathFi's answer bodies: read up to a cap, then parsed into a model, or MathFiParseError.

A body is untrusted input. It is read only up to `cap` bytes (MATHFI_MAX_BODY): a larger
declared `Content-Length` is refused before a byte is read, and a body without one (chunked,
or compressed: the cap counts decompressed bytes) is read in pieces and refused as soon as
it passes the cap. Every way a body can fail to become a model (too large, not JSON, nested
too deep for the parser, a field of the wrong type, a list too long) is a MathFiParseError
with a one-line reason that never quotes the body.

`body_digest` names a body for the poller's cheap path (an unchanged answer is not parsed):
SHA-256, so two different bodies of one job never pass for the same one (OpenSSL's, with the
CPU's SHA instructions where it has them: faster than the BLAKE2b of Python's own C code).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable
from typing import TypeVar

import aiohttp
from pydantic import BaseModel, ValidationError

from bot.errors import MathFiParseError

M = TypeVar("M", bound=BaseModel)

CHUNK = 64 * 1024


def read_capped(response: aiohttp.ClientResponse, *, cap: int, where: str) -> Awaitable[bytes]:
    """The whole body, or MathFiParseError once it is (or says it will be) over `cap` bytes.

    Not a coroutine itself: the common body (declared length, not compressed) is read by
    `response.read()` directly, one coroutine fewer on every poll's path."""
    declared = response.content_length
    if declared is not None and declared > cap:
        raise MathFiParseError(
            f"MathFi answered {where} with a body of {declared} bytes, over the "
            f"{cap}-byte cap (MATHFI_MAX_BODY); not read"
        )
    if declared is not None and "Content-Encoding" not in response.headers:
        return response.read()  # exactly `declared` bytes: the fast, common path
    return _read_in_pieces(response, cap=cap, where=where)


async def _read_in_pieces(response: aiohttp.ClientResponse, *, cap: int, where: str) -> bytes:
    """A body of unknown length (chunked, or compressed), refused once it passes `cap`."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(CHUNK):
        size += len(chunk)
        if size > cap:
            raise MathFiParseError(
                f"MathFi answered {where} with a body over the {cap}-byte cap "
                "(MATHFI_MAX_BODY); reading stopped"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def body_digest(body: bytes) -> bytes:
    """A digest of the raw body: equal only for byte-identical bodies (in practice)."""
    return hashlib.sha256(body).digest()


def parse_body(model: type[M], body: bytes, *, where: str) -> M:
    """Validate a 2xx body; MathFiParseError names the first failing field."""
    try:
        data = json.loads(body)
    except RecursionError as err:
        raise MathFiParseError(
            f"MathFi answered {where} with a body nested too deeply to parse"
        ) from err
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError, a 5,000-digit number
        raise MathFiParseError(f"MathFi answered {where} with a body that is not JSON") from err
    try:
        return model.model_validate(data)
    except ValidationError as err:
        # `from None`: pydantic's message echoes the input, which may hold a token.
        first = err.errors()[0]
        name = ".".join(str(part) for part in first["loc"]) or None
        message = f"MathFi answered {where} with an invalid {name or 'body'}: {first['msg']}"
        raise MathFiParseError(one_line(message), field=name) from None


def one_line(text: str) -> str:
    """`text` with every run of whitespace (newlines too) made one space."""
    return " ".join(text.split())
