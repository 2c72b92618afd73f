"""One frames request of a stream, full duplex: the body is read and fed to the scheduler while coded units
(or decoded frames) go back as they are ready, framed as messages (:mod:`s2vc.transport.streams`).

Reading and writing run concurrently on the event loop; the coding runs on the scheduler thread, whose outcomes
come back through ``loop.call_soon_threadsafe``. A reliable stream holds at most ``inbox_frames`` items in
flight (the upload is throttled, nothing is dropped); a realtime encode stream submits every frame at once and
lets the scheduler drop what it cannot code in time.
"""

from __future__ import annotations

import asyncio
import logging
import time

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from s2vc.bitstream import UNIT_MIN_LENGTH, UnitType, end_unit, pack_header, pack_unit, unpack_unit
from s2vc.errors import CorruptStreamError, InputError, S2VCError, StateMismatchError, TruncatedStreamError, UnitOrderError

from .metrics import Metrics
from .scheduler import Outcome, Scheduler, Work
from .sessions import SessionManager, StreamSession
from s2vc.transport.streams import MEDIA_TYPE, Kind, frame_from_bytes, frame_to_bytes, pack_json, pack_message

log = logging.getLogger("s2vc.server")
_INPUT_DONE = object()


def check_params_fit(session: StreamSession, params) -> None:
    """A header or SEQ unit must come from this stream's model and describe its picture size."""
    session.served.codec.check_sequence(params)
    spec = session.spec
    if (params.width, params.height) != (spec.width, spec.height):
        raise InputError(f"the bitstream is {params.width}x{params.height}, this stream was opened as {spec.width}x{spec.height}")


def live_text(exc: BaseException) -> str:
    """An error's message as a live receiver should read it: a drifted state or a lost unit is recovered by the
    next I-frame, which a live sender can be asked for (a file cannot)."""
    text = str(exc)
    if isinstance(exc, (StateMismatchError, UnitOrderError)):
        text += "; request an I-frame to resynchronise"
    return text


def error_message(exc: BaseException, frame: int | None, fatal: bool = False) -> bytes:
    return pack_json(Kind.ERROR, {"error": type(exc).__name__, "message": live_text(exc), "frame": frame, "fatal": fatal})


class FramesPump:
    """Runs one frames request of ``session``; ``initial`` = body bytes already read by the route."""

    def __init__(self, session: StreamSession, sessions: SessionManager, scheduler: Scheduler, metrics: Metrics, *,
                 initial: bytes, body_done: bool, end: bool, keyframe: bool) -> None:
        self.session, self.sessions, self.scheduler, self.metrics = session, sessions, scheduler, metrics
        self.lane = session.lane
        self.initial, self.body_done = initial, body_done
        self.end = end  # the client ends the stream with this request (encode: END unit; decode: END unit read)
        self.keyframe = keyframe
        self.buf = bytearray()
        self.first_seq = session.next_seq
        self.pending = 0
        self.stopped = False  # input is no longer coded (fatal error, END read, session closed)
        self.disconnected = False
        self.ended_here = False
        self.credits = asyncio.Semaphore(self.lane.capacity)
        spec = session.spec
        self.max_unit = max(1 << 20, 4 * spec.width * spec.height)

    # ------------------------------------------------------------------ main
    async def run(self, send: Send, receive: Receive) -> None:
        loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue = asyncio.Queue()
        self.session.sink = lambda outcome: loop.call_soon_threadsafe(self.queue.put_nowait, outcome)
        self.reader = asyncio.create_task(self._read(receive))
        try:
            await self._write(send)
        finally:
            self.reader.cancel()
            self.session.sink = None
            if self.pending:
                self.scheduler.drop_waiting(self.lane, "cancelled")
            self.session.busy = False
            self.session.last_active = time.monotonic()

    async def _emit(self, send: Send, data: bytes) -> None:
        self.metrics.bytes_out.labels("stream").inc(len(data))
        await send({"type": "http.response.body", "body": data, "more_body": True})

    async def _write(self, send: Send) -> None:
        session = self.session
        if session.spec.mode == "encode" and not session.header_sent:
            spec = session.spec
            params = session.served.codec.sequence_params(spec.width, spec.height, spec.fps, spec.rate)
            await self._emit(send, pack_message(Kind.DATA, pack_header(params)))
            session.header_sent = True
        input_done = False
        while not (input_done and self.pending == 0):
            try:
                item = await asyncio.wait_for(self.queue.get(), timeout=1.0)
            except asyncio.TimeoutError:
                if session.closed and not input_done:  # closed while the client is quiet: stop waiting for its body
                    self.stopped = True
                    self.reader.cancel()
                    input_done = True
                continue
            if item is _INPUT_DONE:
                input_done = True
            elif isinstance(item, Outcome):
                if item.seq < self.first_seq:
                    continue  # a late outcome of an earlier request of this session
                self.pending -= 1
                if not self.lane.realtime:
                    self.credits.release()
                await self._emit(send, await self._outcome_message(item))
            else:
                await self._emit(send, item)
        if self.disconnected:
            return
        if session.closed and not self.ended_here:  # closed under us: the duration limit, a DELETE, shutdown
            await self._emit(send, error_message(InputError(f"stream {session.id} is closed: {session.closed}"), None, fatal=True))
        elif self.end:
            if session.spec.mode == "encode":
                state = self.lane.state
                await self._emit(send, pack_message(Kind.DATA, pack_unit(end_unit(state.frame_index, state.rate))))
            self.sessions.close(session, "end", "the client ended it")
            self.ended_here = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _outcome_message(self, outcome: Outcome) -> bytes:
        index = outcome.seq - self.first_seq
        if outcome.kind == "dropped":
            return pack_json(Kind.DROP, {"frame": index, "reason": outcome.reason})
        if outcome.kind == "error":
            return error_message(outcome.error, index)  # type: ignore[arg-type]
        if outcome.unit is not None:
            return pack_message(Kind.DATA, pack_unit(outcome.unit))
        fmt = self.session.spec.pixel_format
        data = await asyncio.to_thread(frame_to_bytes, fmt, outcome.frame) if fmt == "i420" else frame_to_bytes(fmt, outcome.frame)
        return pack_message(Kind.DATA, data)

    # ------------------------------------------------------------------ input
    async def _read(self, receive: Receive) -> None:
        try:
            if self.initial:
                await self._consume(self.initial)
            more = not self.body_done
            while more and not self.stopped:  # after a fatal error or END the rest of the body is not read
                message = await receive()
                if message["type"] == "http.disconnect":
                    self.disconnected = True
                    return
                data = message.get("body", b"")
                more = message.get("more_body", False)
                self.metrics.bytes_in.labels("stream").inc(len(data))
                await self._consume(data)
            if not self.stopped and self.buf:
                self._local(self._leftover_error(), fatal=False)
        except Exception as exc:  # a bug: say so in the stream rather than hang it
            log.exception("stream %s: reading the request failed", self.session.id)
            self._local(RuntimeError(f"internal error reading the request ({type(exc).__name__})"), fatal=True)
        finally:
            self.queue.put_nowait(_INPUT_DONE)

    def _local(self, exc: BaseException, *, fatal: bool, frame: int | None = None) -> None:
        self.queue.put_nowait(error_message(exc, frame, fatal))
        if fatal:
            self.stopped = True

    def _leftover_error(self) -> S2VCError:
        n = len(self.buf)
        if self.session.spec.mode == "encode":
            spec = self.session.spec
            return InputError(f"the body ended {n} bytes into a {spec.width}x{spec.height} {spec.pixel_format} frame of "
                              f"{self.session.frame_bytes} bytes; the partial frame was not coded")
        return TruncatedStreamError(f"the body ended inside a unit ({n} bytes); the partial unit was not decoded")

    async def _consume(self, data: bytes) -> None:
        self.buf += data
        if self.session.spec.mode == "encode":
            await self._consume_frames()
        else:
            await self._consume_units()

    async def _consume_frames(self) -> None:
        spec, size = self.session.spec, self.session.frame_bytes
        while len(self.buf) >= size and not self.stopped:
            raw = bytes(self.buf[:size])
            del self.buf[:size]
            if spec.pixel_format == "i420":
                frame = await asyncio.to_thread(frame_from_bytes, "i420", spec.width, spec.height, raw)
            else:
                frame = frame_from_bytes("rgb24", spec.width, spec.height, raw)
            await self._submit(frame)

    async def _consume_units(self) -> None:
        while len(self.buf) >= 4 and not self.stopped:
            length = int.from_bytes(self.buf[:4], "big")
            if not UNIT_MIN_LENGTH <= length <= self.max_unit:
                self._local(CorruptStreamError(f"unit length {length} is outside {UNIT_MIN_LENGTH}..{self.max_unit} for this stream; "
                                               "the rest of the body cannot be framed"), fatal=True)
                return
            if len(self.buf) < 4 + length:
                return
            body = bytes(self.buf[: 4 + length])
            del self.buf[: 4 + length]
            try:
                unit, _ = unpack_unit(body)
                if unit.type == UnitType.SEQ:
                    check_params_fit(self.session, unit.params())
                    continue
            except S2VCError as exc:  # a corrupt unit or a SEQ of another stream: say so, go on with the next
                self._local(exc, fatal=False, frame=self.session.next_seq - self.first_seq)
                continue
            if unit.type == UnitType.END:
                self.end, self.stopped = True, True
                return
            await self._submit(unit)

    async def _submit(self, payload) -> None:
        if not self.lane.realtime:
            await self.credits.acquire()
        if self.session.closed:
            self.stopped = True  # the writer reports why once the items in flight are accounted for
            return
        seq = self.session.next_seq
        self.session.next_seq += 1
        self.session.last_active = time.monotonic()
        self.pending += 1
        self.scheduler.submit(self.lane, Work(seq, payload, force_intra=self.keyframe))
        self.keyframe = False


class FramesResponse(Response):
    """A 200 response whose body is produced by a :class:`FramesPump` while the request body is still coming in."""

    media_type = MEDIA_TYPE

    def __init__(self, pump: FramesPump) -> None:
        self.pump = pump
        self.status_code = 200
        self.background = None
        self.init_headers({"cache-control": "no-store", "x-s2vc-stream": pump.session.id})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await self.pump.run(send, receive)
