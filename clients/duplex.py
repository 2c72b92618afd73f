"""Full-duplex HTTP/1.1 for stream frames requests: the chunked body is written while the response is read.

Common HTTP clients (httpx, requests) send the whole request body before they read the response, which defeats
a live stream (units come back as frames are coded, while later frames are still being captured) and can
deadlock on large decode streams. This module speaks HTTP/1.1 itself with ``h11`` over an asyncio connection.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from urllib.parse import urlencode, urlsplit

import h11

from s2vc.transport.streams import Kind, MessageReader

from .errors import ServerError

READ_SIZE = 1 << 16


async def _chunks(body: AsyncIterable[bytes] | Iterable[bytes]) -> AsyncIterator[bytes]:
    if isinstance(body, AsyncIterable):
        async for chunk in body:
            yield chunk
    else:
        for chunk in body:
            yield chunk


async def post_frames(
    base_url: str, stream_id: str, body: AsyncIterable[bytes] | Iterable[bytes], *, api_key: str | None = None,
    end: bool = False, keyframe: bool = False, idle_timeout: float | None = 60.0,
) -> AsyncIterator[tuple[Kind, bytes]]:
    """POST ``body`` (chunks of raw frames or units) to ``/v1/streams/{stream_id}/frames``; yield the response
    messages ``(kind, body)`` as they arrive. Raises :class:`~clients.errors.ServerError` on a non-200 answer and
    ``TimeoutError`` when the server sends nothing for ``idle_timeout`` seconds while the body has been sent."""
    url = urlsplit(base_url)
    host, port = url.hostname or "127.0.0.1", url.port or (443 if url.scheme == "https" else 80)
    query = urlencode({k: "true" for k, v in (("end", end), ("keyframe", keyframe)) if v})
    target = f"{url.path.rstrip('/')}/v1/streams/{stream_id}/frames" + (f"?{query}" if query else "")
    headers = [("Host", f"{host}:{port}"), ("Transfer-Encoding", "chunked"), ("Content-Type", "application/octet-stream")]
    if api_key:
        headers.append(("Authorization", f"Bearer {api_key}"))
    reader, writer = await asyncio.open_connection(host, port, ssl=url.scheme == "https" or None)
    conn = h11.Connection(h11.CLIENT)

    async def send_body() -> None:
        async for chunk in _chunks(body):
            if chunk:
                writer.write(conn.send(h11.Data(data=chunk)))
                await writer.drain()
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()

    writer.write(conn.send(h11.Request(method="POST", target=target, headers=headers)))
    sender = asyncio.create_task(send_body())
    messages = MessageReader()
    try:
        status, error_body = 0, b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                read = asyncio.ensure_future(reader.read(READ_SIZE))
                await asyncio.wait({read, sender}, return_when=asyncio.FIRST_COMPLETED)
                failed = sender.done() and sender.exception()
                if not read.done() and failed and not isinstance(failed, OSError):  # the body iterator failed: give up
                    read.cancel()
                    raise sender.exception()  # type: ignore[misc]
                data = await asyncio.wait_for(read, idle_timeout)
                conn.receive_data(data)
                if not data and conn.their_state is not h11.DONE:
                    raise ConnectionError("the server closed the connection in the middle of the response")
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                if status != 200:
                    error_body += event.data
                    continue
                for message in messages.feed(event.data):
                    yield message
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
        if status != 200:
            raise ServerError(status, _detail(error_body))
        messages.close()
    finally:
        sender.cancel()
        writer.close()


def _detail(body: bytes) -> str:
    try:
        return str(json.loads(body)["detail"])
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace")
