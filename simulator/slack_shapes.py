"""What the local Slack sink accepts: message text, blocks, metadata and views, checked
against the limits Slack enforces, with Slack's error codes; and how a call's parameters
are read (query string, JSON or form body).

Imports nothing from bot/ or store/.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

MAX_BLOCKS, MAX_TEXT = 50, 40_000
MAX_VIEW_BLOCKS, MAX_VIEW_BYTES = 100, 250_000  # views.publish: 100 blocks, 250 kB
# Per-block limits Slack enforces: block type -> (text limit, list key, list limit).
BLOCK_LIMITS = {"section": (3000, "fields", 10), "header": (150, "", 0)}
BLOCK_LIMITS |= {"context": (0, "elements", 10), "actions": (0, "elements", 25)}

Params = dict[str, Any]


class ApiError(Exception):
    """Answer `{"ok": false, "error": code}` with HTTP 200, as Slack does.

    `messages` go to `response_metadata.messages`, where Slack explains an
    `invalid_arguments` ("[ERROR] no more than 100 items allowed [json-pointer:/view/blocks]").
    """

    def __init__(self, code: str, *messages: str) -> None:
        super().__init__(code)
        self.code = code
        self.messages = list(messages)


def truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def decoded(value: Any, error: str) -> Any:
    """Blocks, metadata and views arrive as objects (JSON bodies) or JSON strings (forms)."""
    if isinstance(value, str):
        try:
            return json.loads(value) if value.strip() else None
        except ValueError:
            raise ApiError(error) from None
    return value


def content(params: Mapping[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """(text, blocks) of a message, checked against Slack's limits."""
    text = params.get("text") or ""
    blocks = decoded(params.get("blocks"), "invalid_blocks") or []
    if not isinstance(text, str):
        raise ApiError("invalid_arguments")
    if not text and not blocks:
        raise ApiError("no_text")
    if len(text) > MAX_TEXT:
        raise ApiError("msg_too_long")
    if not isinstance(blocks, list) or len(blocks) > MAX_BLOCKS:
        raise ApiError("invalid_blocks")
    if not all(block_ok(block) for block in blocks):
        raise ApiError("invalid_blocks")
    return text, blocks


def block_ok(block: Any) -> bool:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        return False
    text_limit, list_key, list_limit = BLOCK_LIMITS.get(block["type"], (0, "", 0))
    text = block.get("text")
    if text_limit and isinstance(text, dict) and len(str(text.get("text", ""))) > text_limit:
        return False
    return not list_key or len(block.get(list_key) or []) <= list_limit


def metadata(params: Params) -> dict[str, Any] | None:
    found = decoded(params.get("metadata"), "invalid_metadata_format")
    if found is None:
        return None
    valid = isinstance(found, dict) and isinstance(found.get("event_type"), str)
    if not valid or not isinstance(found.get("event_payload", {}), dict):
        raise ApiError("invalid_metadata_format")
    return dict(found)


def home_view(raw: Any) -> dict[str, Any]:
    """The `view` of views.publish: JSON of a `home` view with at most 100 valid blocks."""
    if isinstance(raw, str) and len(raw.encode()) > MAX_VIEW_BYTES:
        raise ApiError("view_too_large")
    view = decoded(raw, "invalid_arguments")
    if not isinstance(view, dict):
        raise ApiError("invalid_arguments", "[ERROR] missing required field: view")
    if len(json.dumps(view).encode()) > MAX_VIEW_BYTES:
        raise ApiError("view_too_large")
    if view.get("type") != "home":
        raise ApiError("invalid_arguments", _pointer("must be home", "/view/type"))
    blocks = view.get("blocks")
    if not isinstance(blocks, list):
        raise ApiError("invalid_arguments", _pointer("missing required field", "/view/blocks"))
    if len(blocks) > MAX_VIEW_BLOCKS:
        message = f"no more than {MAX_VIEW_BLOCKS} items allowed"
        raise ApiError("invalid_arguments", _pointer(message, "/view/blocks"))
    for index, block in enumerate(blocks):
        if not block_ok(block):
            raise ApiError("invalid_arguments", _pointer("invalid block", f"/view/blocks/{index}"))
    return view


def _pointer(message: str, pointer: str) -> str:
    return f"[ERROR] {message} [json-pointer:{pointer}]"


async def read_params(request: web.Request) -> Params:
    """Query string plus the body, JSON or form-encoded (slack_sdk sends chat.* as JSON)."""
    params: Params = dict(request.query)
    if request.method == "POST" and request.can_read_body:
        if request.content_type == "application/json":
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("the JSON body must be an object")
            params.update(body)
        else:
            form = await request.post()
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
    return params
