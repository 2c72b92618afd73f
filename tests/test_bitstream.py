"""Container format of s2vc.bitstream: round trips, golden bytes, truncation, bit flips, garbage."""

from __future__ import annotations

import io
import random
import struct
import tracemalloc
import zlib

import pytest

from s2vc import bitstream as B
from s2vc.errors import (
    BitstreamError,
    CorruptStreamError,
    TruncatedStreamError,
    UnsupportedVersionError,
)

DOCUMENTED = (TruncatedStreamError, CorruptStreamError, UnsupportedVersionError)

PARAMS = B.SequenceParams(
    model_id="tiny",
    weight_hash=bytes.fromhex("0123456789abcdef"),
    rate=2,
    width=128,
    height=96,
    fps_num=30000,
    fps_den=1001,
    reset_interval=32,
    intra_period=0,
)


def _units():
    return [
        B.seq_unit(PARAMS, 0),
        B.Unit(B.UnitType.I, rate=2, frame_index=0, payload=b"\x01\x02\x03\x04"),
        B.Unit(B.UnitType.P, flags=B.FLAG_RESET, rate=2, frame_index=1, state_check=0xDEADBEEF, payload=b"pp"),
        B.Unit(B.UnitType.P, rate=3, frame_index=2, state_check=7, payload=b""),
    ]


def _stream() -> bytes:
    buf = io.BytesIO()
    with B.StreamWriter(buf, PARAMS) as w:
        for u in _units():
            w.write_unit(u)
    return buf.getvalue()


GOLDEN = (
    # header: magic, version, params, crc
    "5332564302"
    "74696e7900000000000000000000000000000000000000000000000000000000"
    "0123456789abcdef" "02" "0080" "0060" "00007530" "03e9" "0020" "0000"
    "1105de04"
    # SEQ unit
    "00000047" "01000200" "00000000" "00000000"
    "74696e7900000000000000000000000000000000000000000000000000000000"
    "0123456789abcdef" "02" "0080" "0060" "00007530" "03e9" "0020" "0000"
    "9d68f13c"
    # I unit
    "00000014" "02000200" "00000000" "00000000" "01020304" "1d0d8e4a"
    # P unit, RESET
    "00000012" "03010200" "00000001" "deadbeef" "7070" "baaa9034"
    # P unit
    "00000010" "03000300" "00000002" "00000007" "03d8695f"
    # END
    "00000010" "04000200" "00000003" "00000000" "3b8657fd"
)


# ---------------------------------------------------------------------------------------------- params/header


def test_header_roundtrip_and_size():
    h = B.pack_header(PARAMS)
    assert len(h) == B.HEADER_SIZE == 64 and B.PARAMS_SIZE == 55
    assert h[:4] == b"S2VC" and h[4] == 2
    params, n = B.unpack_header(h + b"trailing")
    assert params == PARAMS and n == 64
    assert B.unpack_header(b"xx" + h, offset=2)[0] == PARAMS
    assert B.unpack_params(B.pack_params(PARAMS)) == PARAMS


def test_params_defaults_and_extremes():
    p = B.SequenceParams("official", b"\0" * 8, 0, 1, 1, 1)
    assert (p.fps_den, p.reset_interval, p.intra_period) == (1, 32, 0)
    q = B.SequenceParams("x" * 32, b"\xff" * 8, 255, 16384, 16384, 2**32 - 1, 65535, 65535, 65535)
    assert B.unpack_header(B.pack_header(q))[0] == q
    assert B.unpack_header(B.pack_header(p))[0] == p
    assert PARAMS.fps == pytest.approx(29.97, abs=1e-3)


@pytest.mark.parametrize(
    "changes",
    [
        {"model_id": ""},
        {"model_id": "x" * 33},
        {"model_id": "caf\u00e9"},
        {"model_id": "a\0b"},
        {"model_id": "tab\t"},
        {"weight_hash": b"\0" * 7},
        {"weight_hash": "01234567"},
        {"rate": 256},
        {"rate": -1},
        {"width": 0},
        {"height": 16385},
        {"width": 1.0},
        {"width": True},
        {"fps_num": 0},
        {"fps_den": 0},
        {"fps_den": 65536},
        {"reset_interval": -1},
        {"intra_period": 65536},
    ],
)
def test_params_validation(changes):
    kw = {**PARAMS.__dict__, **changes}
    with pytest.raises(ValueError):
        B.SequenceParams(**kw)


def _header_with(body_patch) -> bytes:
    """A header whose params body is patched, with a correct CRC (so only field validation can catch it)."""
    body = bytearray(B.pack_header(PARAMS)[:-4])
    body_patch(body)
    return bytes(body) + struct.pack(">I", zlib.crc32(bytes(body)))


@pytest.mark.parametrize(
    "offset,value,field",
    [
        (5 + 41, b"\x00\x00", "width"),
        (5 + 43, b"\x40\x01", "height"),
        (5 + 45, b"\x00\x00\x00\x00", "fps_num"),
        (5 + 49, b"\x00\x00", "fps_den"),
        (5 + 0, b"\x00", "model_id"),  # empty id
        (5 + 10, b"Z", "model_id"),  # bytes after the NUL padding
        (5 + 1, b"\xc3", "model_id"),  # not ASCII
        (5 + 1, b"\x07", "model_id"),  # not printable
    ],
)
def test_header_field_errors_name_the_field(offset, value, field):
    data = _header_with(lambda b: b.__setitem__(slice(offset, offset + len(value)), value))
    with pytest.raises(CorruptStreamError, match=field):
        B.unpack_header(data)


def test_header_magic_version_crc():
    h = bytearray(B.pack_header(PARAMS))
    with pytest.raises(CorruptStreamError, match="magic"):
        B.unpack_header(b"S2VD" + bytes(h[4:]))
    with pytest.raises(CorruptStreamError, match="magic"):
        B.unpack_header(b"RI")
    v2 = bytearray(h)
    v2[4] = 1  # version 1 (float state checks) is no longer read
    with pytest.raises(UnsupportedVersionError):
        B.unpack_header(bytes(v2))
    with pytest.raises(UnsupportedVersionError):
        B.unpack_header(bytes(v2[:5]))  # known before the rest arrives
    with pytest.raises(UnsupportedVersionError):
        B.StreamReader(bytes(v2[:5]))
    h[20] ^= 1
    with pytest.raises(CorruptStreamError, match="crc32"):
        B.unpack_header(bytes(h))


# ---------------------------------------------------------------------------------------------- units


def test_unit_roundtrip():
    for u in _units() + [B.end_unit(5, rate=1)]:
        data = B.pack_unit(u)
        assert len(data) == B.UNIT_OVERHEAD + len(u.payload)
        assert struct.unpack(">I", data[:4])[0] == len(data) - 4
        back, end = B.unpack_unit(b"ab" + data + b"cd", offset=2)
        assert back == u and end == 2 + len(data)
    assert _units()[0].params() == PARAMS
    assert _units()[2].reset and not _units()[3].reset
    assert isinstance(B.unpack_unit(B.pack_unit(_units()[1]))[0].type, B.UnitType)


@pytest.mark.parametrize(
    "kw",
    [
        {"type": 9},
        {"type": B.UnitType.I, "flags": B.FLAG_RESET},
        {"type": B.UnitType.P, "flags": 4},
        {"type": B.UnitType.SEQ, "flags": B.FLAG_OFFSET, "payload": B.pack_params(PARAMS)},
        {"type": B.UnitType.SEQ, "state_check": 1, "payload": B.pack_params(PARAMS)},
        {"type": B.UnitType.END, "payload": b"x"},
        {"type": B.UnitType.SEQ, "payload": b"short"},
        {"type": B.UnitType.P, "rate": 256},
        {"type": B.UnitType.P, "frame_index": 2**32},
        {"type": B.UnitType.P, "state_check": -1},
        {"type": B.UnitType.P, "payload": "text"},
    ],
)
def test_unit_validation(kw):
    with pytest.raises(ValueError):
        B.Unit(**kw)


def _raw_unit(type_=3, flags=0, rate=0, reserved=0, frame_index=0, state_check=0, payload=b"") -> bytes:
    body = struct.pack(">BBBBII", type_, flags, rate, reserved, frame_index, state_check) + payload
    return struct.pack(">I", len(body) + 4) + body + struct.pack(">I", zlib.crc32(body))


@pytest.mark.parametrize(
    "kw,field",
    [
        ({"type_": 0}, "type"),
        ({"type_": 5}, "type"),
        ({"type_": 255}, "type"),
        ({"flags": 0x80}, "flags"),
        ({"type_": 2, "flags": 1}, "flags"),
        ({"reserved": 1}, "reserved"),
        ({"type_": 4, "state_check": 3}, "state_check"),
        ({"type_": 4, "payload": b"\0"}, "payload"),
        ({"type_": 1, "payload": b"\0" * 55}, "model_id"),
        ({"type_": 1, "payload": b""}, "payload"),
    ],
)
def test_unit_field_errors_name_the_field(kw, field):
    with pytest.raises(CorruptStreamError, match=field):
        B.unpack_unit(_raw_unit(**kw))


def test_unit_crc_mismatch():
    data = bytearray(B.pack_unit(_units()[1]))
    data[-1] ^= 0x10
    with pytest.raises(CorruptStreamError, match="crc32"):
        B.unpack_unit(bytes(data))


def test_hostile_lengths():
    for length in (B.MAX_UNIT_LENGTH + 1, 0xFFFFFFFF):
        with pytest.raises(CorruptStreamError, match="length"):
            B.unpack_unit(struct.pack(">I", length))
    for length in (0, 1, 15):
        with pytest.raises(CorruptStreamError, match="length"):
            B.unpack_unit(struct.pack(">I", length) + b"\0" * 64)
    # the maximum itself is legal: missing data is a truncation, and nothing near that size is allocated
    data = B.pack_header(PARAMS) + struct.pack(">I", B.MAX_UNIT_LENGTH) + b"\0" * 100
    tracemalloc.start()
    with pytest.raises(TruncatedStreamError, match=f"expected {B.MAX_UNIT_LENGTH} bytes, 100 available"):
        B.read_stream(data)
    with pytest.raises(TruncatedStreamError):
        B.unpack_unit(data, offset=64)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 * 1024 * 1024


class _SpyReader(io.BytesIO):
    def __init__(self, data):
        super().__init__(data)
        self.max_request = 0

    def read(self, n=-1):
        assert n is not None and n >= 0, "reader must never read unbounded"
        self.max_request = max(self.max_request, n)
        return super().read(n)


def test_reader_reads_hostile_length_in_bounded_chunks():
    src = _SpyReader(B.pack_header(PARAMS) + struct.pack(">I", B.MAX_UNIT_LENGTH) + b"\0" * 10)
    reader = B.StreamReader(src)
    with pytest.raises(TruncatedStreamError):
        reader.read_unit()
    assert src.max_request <= 1 << 20
    src = _SpyReader(B.pack_header(PARAMS) + struct.pack(">I", B.MAX_UNIT_LENGTH + 1))
    with pytest.raises(CorruptStreamError):
        B.StreamReader(src).read_unit()


# ---------------------------------------------------------------------------------------------- streams


def test_golden_stream():
    """The exact bytes of a fixed stream: changing them is a format change (bump FORMAT_VERSION)."""
    data = _stream()
    assert data.hex() == GOLDEN
    params, units = B.read_stream(bytes.fromhex(GOLDEN))
    assert params == PARAMS
    assert units == _units() + [B.end_unit(3, rate=2)]


def test_writer_reader_roundtrip_file_like_and_bytes():
    data = _stream()
    for source in (data, bytearray(data), memoryview(data), io.BytesIO(data), io.BufferedReader(io.BytesIO(data))):
        reader = B.StreamReader(source)
        assert reader.params == PARAMS
        units = list(reader)
        assert units[:-1] == _units() and units[-1].type == B.UnitType.END
        assert reader.ended and reader.read_unit() is None


def test_reader_stops_after_end():
    """A live stream: nothing after END is read."""
    reader = B.StreamReader(_stream() + b"anything after END is not read")
    assert [u.type for u in reader][-1] == B.UnitType.END
    assert reader.read_unit() is None


def test_a_whole_file_refuses_data_after_end():
    """Issue 17.5: units after END in a file must not be silently ignored."""
    extra = B.pack_unit(B.Unit(B.UnitType.P, frame_index=3, state_check=1, payload=b"late"))
    with pytest.raises(CorruptStreamError, match="after the END unit"):
        B.read_stream(_stream() + extra, require_end=True)
    with pytest.raises(CorruptStreamError, match="after the END unit"):
        B.read_stream(_stream() + b"\0", require_end=True)
    assert len(B.read_stream(_stream() + extra, require_end=False)[1]) == 5


def test_i_units_carry_a_state_check():
    """Format version 2: the entropy-parameter check is carried by I and P units alike."""
    u = B.Unit(B.UnitType.I, frame_index=0, state_check=0x1234, payload=b"i")
    assert B.unpack_unit(B.pack_unit(u))[0] == u


def test_clean_end_without_end_unit():
    data = _stream()
    cut = len(data) - B.UNIT_OVERHEAD  # drop END
    reader = B.StreamReader(data[:cut])
    assert len(list(reader)) == 4 and not reader.ended
    with pytest.raises(TruncatedStreamError):
        B.read_stream(data[:cut], require_end=True)
    assert len(B.read_stream(data[:cut], require_end=False)[1]) == 4


def test_writer_api():
    buf = io.BytesIO()
    w = B.StreamWriter(buf, PARAMS)
    w.write_unit(B.Unit(B.UnitType.I, rate=2, frame_index=0, payload=b"i"))
    w.write_seq()
    with pytest.raises(ValueError):
        w.write_unit(B.end_unit(0))
    w.close()
    w.close()  # idempotent
    with pytest.raises(ValueError):
        w.write_unit(B.Unit(B.UnitType.P, frame_index=1))
    _, units = B.read_stream(buf.getvalue())
    assert [u.type for u in units] == [B.UnitType.I, B.UnitType.SEQ, B.UnitType.END]
    assert units[1].frame_index == 1 and units[1].params() == PARAMS
    assert units[2].frame_index == 1 and w.bytes_written == len(buf.getvalue())
    # an exception inside the context manager leaves the stream without END
    buf = io.BytesIO()
    with pytest.raises(RuntimeError):
        with B.StreamWriter(buf, PARAMS):
            raise RuntimeError
    assert len(buf.getvalue()) == B.HEADER_SIZE


# ---------------------------------------------------------------------------------------------- robustness


def test_every_truncation_raises_truncated():
    data = _stream()
    for n in range(len(data)):
        with pytest.raises(TruncatedStreamError) as info:
            B.read_stream(data[:n], require_end=True)
        assert "expected" in str(info.value) and "available" in str(info.value)


def test_every_truncation_inside_a_unit_raises_even_without_require_end():
    data = _stream()
    boundaries = {len(data)}
    offset = B.HEADER_SIZE
    boundaries.add(offset)
    while offset < len(data):
        _, offset = B.unpack_unit(data, offset)
        boundaries.add(offset)
    for n in range(len(data)):
        if n in boundaries:
            B.read_stream(data[:n], require_end=False)
        else:
            with pytest.raises(TruncatedStreamError):
                B.read_stream(data[:n], require_end=False)


def test_every_bit_flip_is_detected():
    data = _stream()
    for i in range(len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[i] ^= 1 << bit
            with pytest.raises(DOCUMENTED):
                B.read_stream(bytes(flipped))


def _parse_any(data: bytes, require_end: bool) -> None:
    try:
        params, units = B.read_stream(data, require_end=require_end)
    except DOCUMENTED:
        return
    except BitstreamError as exc:  # pragma: no cover - would be a bug
        raise AssertionError(f"undocumented error {type(exc).__name__}") from exc
    for u in units:  # anything that parses re-serialises to valid units
        assert B.unpack_unit(B.pack_unit(u))[0] == u
    assert B.unpack_header(B.pack_header(params))[0] == params


def test_random_garbage_only_documented_errors():
    rng = random.Random(1)
    for _ in range(3000):
        n = rng.randrange(0, 200)
        _parse_any(bytes(rng.randrange(256) for _ in range(n)), rng.random() < 0.5)
    header = B.pack_header(PARAMS)
    for _ in range(3000):  # valid header, random units
        n = rng.randrange(0, 120)
        tail = bytes(rng.randrange(256) for _ in range(n))
        if rng.random() < 0.5 and n >= 4:  # plausible length field
            tail = struct.pack(">I", rng.randrange(0, 130)) + tail[4:]
        _parse_any(header + tail, rng.random() < 0.5)


def test_random_mutations_only_documented_errors():
    rng = random.Random(2)
    data = _stream()
    for _ in range(3000):
        m = bytearray(data)
        for _ in range(rng.randrange(1, 6)):
            op = rng.randrange(3)
            pos = rng.randrange(len(m))
            if op == 0:
                m[pos] = rng.randrange(256)
            elif op == 1:
                del m[pos : pos + rng.randrange(1, 8)]
            else:
                m[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
        _parse_any(bytes(m), rng.random() < 0.5)


def test_unpack_functions_on_garbage():
    rng = random.Random(3)
    for _ in range(2000):
        blob = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 100)))
        for fn in (B.unpack_header, B.unpack_unit, B.unpack_params):
            try:
                fn(blob)
            except DOCUMENTED:
                pass
