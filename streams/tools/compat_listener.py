"""A listener in front of the embedded broker for Kafka clients built on librdkafka before 2.2, such as
Debian bookworm's ``kcat`` (1.7.1, librdkafka 2.0.2).

Why: those librdkafka versions skip one byte too few of every KIP-482 tagged field they do not know
(fixed in librdkafka 2.2.0). Apache Kafka leaves out tagged fields that hold their default value, so
its responses rarely carry any; the embedded Tansu broker answers ApiVersions v3 with all four of that
response's tagged fields, at their defaults (no supported or finalized features, finalized-features
epoch -1, not ready for a ZooKeeper migration). librdkafka then reads the next field's bytes as a
length, runs past the end, and gives up with ``ApiVersionRequest failed: Local: Read underflow``
before any other request. It needs nothing from those fields, and the other requests it makes are of
versions without tagged fields.

How: the listener relays every request and response unchanged except three kinds of response:
ApiVersions v3 and later lose their top-level tagged fields (:func:`without_tagged_fields`), and
Metadata and FindCoordinator name the listener instead of the broker (:func:`metadata_via`,
:func:`coordinator_via`), so that a client that bootstrapped on the listener stays on it. Clients on
the broker's own port (the worker, aiokafka, librdkafka 2.2 and later) never pass through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

API_VERSIONS, METADATA, FIND_COORDINATOR = 18, 3, 10
_INT16, _INT32 = struct.Struct(">h"), struct.Struct(">i")


class _Reader:
    """Reads Kafka protocol primitives from ``data`` from ``at`` on."""

    def __init__(self, data: bytes, at: int = 0) -> None:
        self.data, self.at = data, at

    def fixed(self, size: int) -> bytes:
        if self.at + size > len(self.data):
            raise ValueError("response ends early")
        chunk = self.data[self.at : self.at + size]
        self.at += size
        return chunk

    def int16(self) -> int:
        return _INT16.unpack(self.fixed(2))[0]

    def int32(self) -> int:
        return _INT32.unpack(self.fixed(4))[0]

    def uvarint(self) -> int:
        value = shift = 0
        while True:
            byte = self.fixed(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7

    def string(self, compact: bool) -> bytes | None:
        """A (nullable) string's bytes, or None."""
        size = self.uvarint() - 1 if compact else self.int16()
        return None if size < 0 else self.fixed(size)

    def array_length(self, compact: bool) -> int:
        return self.uvarint() - 1 if compact else self.int32()

    def skip_tagged_fields(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()  # the tag
            self.fixed(self.uvarint())


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(text: bytes, compact: bool) -> bytes:
    return (_uvarint(len(text) + 1) if compact else _INT16.pack(len(text))) + text


def without_tagged_fields(response: bytes) -> bytes:
    """An ApiVersions v3+ response (after its size; the header is the correlation id alone) without its
    top-level tagged fields: what Apache Kafka sends when they hold their defaults.

    >>> body = bytes.fromhex("00000007" "0000" "02" "001200000004" "00" "00000000" "01000101")
    >>> without_tagged_fields(body).hex()
    '00000007000002001200000004000000000000'
    """
    reader = _Reader(response, 4)
    reader.int16()  # error code
    for _ in range(reader.array_length(compact=True)):
        reader.fixed(6)  # api key, min and max version
        reader.skip_tagged_fields()
    reader.int32()  # throttle time
    return response[: reader.at] + b"\x00"


@dataclass(frozen=True, slots=True)
class Address:
    host: bytes
    port: int


def _header_end(reader: _Reader, flexible: bool) -> None:
    reader.int32()  # correlation id
    if flexible:
        reader.skip_tagged_fields()


def metadata_via(response: bytes, version: int, address: Address) -> bytes:
    """A Metadata response (after its size) with every broker at ``address``."""
    flexible = version >= 9
    reader = _Reader(response)
    _header_end(reader, flexible)
    if version >= 3:
        reader.int32()  # throttle time
    out = [response[: reader.at]]
    count = reader.array_length(flexible)
    out.append(_uvarint(count + 1) if flexible else _INT32.pack(count))
    for _ in range(count):
        node = reader.fixed(4)
        reader.string(flexible)
        reader.int32()
        rest = reader.at
        if version >= 1:
            reader.string(flexible)  # rack
        if flexible:
            reader.skip_tagged_fields()
        out += [node, _string(address.host, flexible), _INT32.pack(address.port), response[rest : reader.at]]
    out.append(response[reader.at :])
    return b"".join(out)


def coordinator_via(response: bytes, version: int, address: Address) -> bytes:
    """A FindCoordinator response (after its size) with the coordinators at ``address``."""
    flexible = version >= 3
    reader = _Reader(response)
    _header_end(reader, flexible)
    if version >= 1:
        reader.int32()  # throttle time
    out = []
    if version >= 4:  # a coordinator per key
        out.append(response[: reader.at])
        count = reader.array_length(compact=True)
        out.append(_uvarint(count + 1))
        for _ in range(count):
            start = reader.at
            reader.string(compact=True)  # the key
            node = reader.fixed(4)
            out += [response[start : reader.at - 4], node]
            reader.string(compact=True)
            reader.int32()
            out += [_string(address.host, True), _INT32.pack(address.port)]
            rest = reader.at
            reader.int16()  # error code
            reader.string(compact=True)  # error message
            reader.skip_tagged_fields()
            out.append(response[rest : reader.at])
        out.append(response[reader.at :])
        return b"".join(out)
    reader.int16()  # error code
    if version >= 1:
        reader.string(flexible)  # error message
    reader.int32()  # node id
    out.append(response[: reader.at])
    reader.string(flexible)
    reader.int32()
    out += [_string(address.host, flexible), _INT32.pack(address.port), response[reader.at :]]
    return b"".join(out)


def rewrite(api_key: int, version: int, response: bytes, address: Address) -> bytes:
    """The response a client of the listener gets for a broker's ``response`` (after its size) to a
    request of ``api_key`` and ``version``."""
    if api_key == API_VERSIONS and version >= 3:
        return without_tagged_fields(response)
    if api_key == METADATA:
        return metadata_via(response, version, address)
    if api_key == FIND_COORDINATOR:
        return coordinator_via(response, version, address)
    return response


async def _relay_frames(
    source: asyncio.StreamReader, sink: asyncio.StreamWriter, convert: Callable[[bytes], bytes]
) -> None:
    """Copy size-prefixed frames from ``source`` to ``sink``, each through ``convert``, until EOF."""
    while True:
        size = _INT32.unpack(await source.readexactly(4))[0]
        frame = convert(await source.readexactly(size))
        sink.write(_INT32.pack(len(frame)) + frame)
        await sink.drain()


@dataclass
class CompatListener:
    """The listener on ``host:port`` for the broker on ``upstream_host:upstream_port``, served by a
    thread of its own until :meth:`stop`."""

    upstream_port: int
    port: int
    host: str = "127.0.0.1"
    upstream_host: str = "127.0.0.1"
    _loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    _thread: threading.Thread | None = None
    _server: asyncio.base_events.Server | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> CompatListener:
        started = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._relay, self.host, self.port)
            )
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name="kafka-compat-listener", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError(f"the compatibility listener did not start on {self.bootstrap}")
        return self

    def stop(self) -> None:
        """Stop listening and close every connection. Idempotent."""
        if self._thread is None:
            return
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._thread = None

    async def _relay(self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter) -> None:
        address = Address(self.host.encode(), self.port)
        try:
            broker_in, broker_out = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        except OSError:
            client_out.close()
            return
        asked: dict[int, tuple[int, int]] = {}  # correlation id -> api key, version

        def request(frame: bytes) -> bytes:
            api_key, version, correlation = struct.unpack_from(">hhi", frame)
            asked[correlation] = (api_key, version)
            return frame

        def response(frame: bytes) -> bytes:
            api_key, version = asked.pop(_INT32.unpack_from(frame)[0], (-1, -1))
            return rewrite(api_key, version, frame, address)

        relays = [
            asyncio.ensure_future(_relay_frames(client_in, broker_out, request)),
            asyncio.ensure_future(_relay_frames(broker_in, client_out, response)),
        ]
        with contextlib.suppress(Exception):  # either side closing ends both
            await asyncio.wait(relays, return_when=asyncio.FIRST_COMPLETED)
        for task in relays:
            task.cancel()
        for writer in (client_out, broker_out):
            writer.close()
