"""Gradio's own upload route, guarded: refused while uploads are off, and bounded while they are on.

Every Gradio app serves ``POST /gradio_api/upload``: a file component sends its files there first, and the
event that uses them receives their temporary paths. Left alone, it stores files of up to ``max_file_size``
each, 1,000 to a request, in Gradio's temporary folder for anyone who can reach the server, whether or not
the page has a file component. ``/gradio_api/process_recording`` takes a screen recording the same way; this
app records nothing.

The guard is ASGI middleware in front of Gradio's routes (``launch`` gives it to Gradio through
``app_kwargs``). It answers 403 to both routes while uploads are off. While they are on, a request must say
its length, and is refused (413, 429) when what the app holds of earlier uploads, what requests in flight
may add and the request itself would pass ``UploadLimits.held_bytes``, or when ``held_files`` are held already.
What the app holds is what Gradio recorded it stored (``Blocks.upload_file_set``) and still exists: the
upload handler deletes the files it has read, and Gradio's ``delete_cache`` those left over.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from .uploads import MAX_UPLOAD_BYTES

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UPLOAD_ROUTE = "/gradio_api/upload"
RECORDING_ROUTE = "/gradio_api/process_recording"


@dataclass(frozen=True)
class UploadLimits:
    """How much the upload route may hold of files not yet added to the corpus."""

    held_bytes: int = 20 * MAX_UPLOAD_BYTES
    """Bytes at once: 20 files at the size limit per file, 100 MB."""
    held_files: int = 100
    """Files at once."""


OFF = (
    "uploading is off on this server: it takes no files. Restart it with `qa serve --allow-uploads` to enable "
    "adding documents"
)
NO_RECORDINGS = "this server takes no recordings"


class UploadRouteGuard:
    """ASGI middleware: refuses Gradio's upload route unless ``allowed``, and bounds what it may hold if so.

    Args:
        app: The application it wraps (Starlette passes it).
        blocks: The Gradio app, whose ``upload_file_set`` lists the files its upload route stored.
        allowed: Whether the server takes uploads (``--allow-uploads``).
        limits: What the route may hold while uploads are on.
    """

    def __init__(self, app: ASGIApp, *, blocks: Any, allowed: bool, limits: UploadLimits | None = None) -> None:
        self.app = app
        self.blocks = blocks
        self.allowed = allowed
        self.limits = limits or UploadLimits()
        self.in_flight = 0
        """Bytes that requests let through and not yet finished may still add."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", "")).rstrip("/")
        if path.endswith(RECORDING_ROUTE):
            await _refuse(send, 403, NO_RECORDINGS)
            return
        if not path.endswith(UPLOAD_ROUTE):
            await self.app(scope, receive, send)
            return
        if not self.allowed:
            await _refuse(send, 403, OFF)
            return
        length = _content_length(scope)
        if length is None:
            await _refuse(send, 411, "say the upload's length (Content-Length); uploads sent in chunks are refused")
            return
        limits = self.limits
        if length > limits.held_bytes:
            await _refuse(
                send,
                413,
                f"this upload is {length / 1e6:.1f} MB; send at most {limits.held_bytes / 1e6:.1f} MB at once",
            )
            return
        held_bytes, held_files = self.held()
        # No await between this check and the reservation: requests on the event loop cannot interleave here.
        if held_files >= limits.held_files or held_bytes + self.in_flight + length > limits.held_bytes:
            await _refuse(
                send,
                429,
                f"the server holds {held_files} uploaded files ({held_bytes / 1e6:.1f} MB) not yet added; add "
                "them, or try again within the hour, when files left unused are deleted",
            )
            return
        self.in_flight += length
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= length

    def held(self) -> tuple[int, int]:
        """Bytes and number of the files this app's upload route stored that still exist."""
        total = count = 0
        for name in list(self.blocks.upload_file_set):
            try:
                total += os.stat(name).st_size
            except OSError:  # deleted: added to the corpus already, or expired
                continue
            count += 1
        return total, count


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key.lower() == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return None
            return length if length >= 0 else None
    return None


async def _refuse(send: Send, status: int, text: str) -> None:
    """A plain-text refusal; the request's body is never read."""
    body = text.encode("utf-8")
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    if status == 429:
        headers.append((b"retry-after", b"600"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
