"""ASGI middleware: request size limits, enforced before a body is read into memory or onto disk; and the last
word on any failure, so no traceback reaches a client."""

from __future__ import annotations

import json
from typing import Callable


class BodyLimit:
    """Refuse a body larger than its path's limit with 413: by its Content-Length at once, or, for a body sent
    without one (chunked), as soon as the bytes received pass the limit; the app's own answer is then replaced."""

    def __init__(self, app, limits: dict[str, int], default: int):
        self.app, self.limits, self.default = app, limits, default

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limits.get(scope["path"].rstrip("/"), self.default)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return await _too_large(send, limit)
        received, over, replaced = 0, False, False

        async def counted_receive():
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    raise TooLarge  # never a cut body: a truncated upload must not be ingested as if whole
            return message

        async def guarded_send(message):
            nonlocal replaced
            if over and message["type"] == "http.response.start" and not replaced:
                replaced = True
                await _too_large(send, limit)
            elif not replaced:
                await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except TooLarge:
            if not replaced:
                await _too_large(send, limit)


class TooLarge(Exception):
    """Raised into the app when a body passes its limit (FastAPI may turn it into a 400 of its own: replaced)."""


async def _too_large(send, limit: int) -> None:
    body = json.dumps({"error": {"message": f"request body larger than {limit:,} bytes "
                                            f"(the limit for this endpoint; see max_file_mb for uploads)",
                                 "type": "request_too_large"}}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class CatchAll:
    """Any exception a request raises becomes a JSON error from `describe(exc) -> (status, body)`, and goes no
    further: Starlette's own last handler re-raises it after answering, and uvicorn then drops the connection."""

    def __init__(self, app, describe: Callable[[Exception], tuple[int, dict]]):
        self.app, self.describe = app, describe

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracked_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        except Exception as exc:
            status, body = self.describe(exc)
            if started:
                return  # mid-response: the client sees the stream end; the log has the reason
            data = json.dumps(body).encode()
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
            await send({"type": "http.response.body", "body": data})
