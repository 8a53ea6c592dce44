"""How shoald's remote listener (shoal.daemon.remote) refuses a client after the TLS handshake
so that the client shows why: an HTTP client (docker) gets a 403 with Docker's ``{"message": …}``;
a gRPC client (shoal) gets a trailers-only response with grpc-status UNAUTHENTICATED and the
reason as grpc-message on its first call, written here as a few HTTP/2 frames (a closed connection
would only make it retry and report "unavailable"). Both read what they need of the request
within a deadline and never more than one frame of the default maximum size.
"""

from __future__ import annotations

import asyncio
import json
import ssl

from shoal.daemon.tlsstream import TLSStream

REQUEST_HEAD_TIMEOUT = 5.0       # seconds to read a refused client's request before answering it
GRPC_UNAUTHENTICATED = 16


async def answer_http(client: TLSStream, status: int, message: str) -> None:
    """Answer an HTTP client once its request head is in (closing earlier can reset the connection
    before it reads the answer), within a deadline."""
    try:
        async with asyncio.timeout(REQUEST_HEAD_TIMEOUT):
            await client.readuntil(b"\r\n\r\n")
    except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError, ssl.SSLError):
        pass
    body = json.dumps({"message": message}).encode()
    reason = {403: "Forbidden", 503: "Service Unavailable"}[status]
    try:
        client.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        async with asyncio.timeout(REQUEST_HEAD_TIMEOUT):
            await client.drain()
    except (TimeoutError, OSError, ssl.SSLError):
        pass


_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_H2_MAX_FRAME = 16384          # the default SETTINGS_MAX_FRAME_SIZE a client may send us


def _h2_frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def _hpack_literal(name: bytes, value: bytes) -> bytes:
    """A header as an HPACK literal without indexing, new name, no Huffman coding (RFC 7541 6.2.2)."""
    def length(n: int) -> bytes:           # 7-bit prefix integer (RFC 7541 5.1)
        if n < 127:
            return bytes([n])
        out, n = [127], n - 127
        while n >= 128:
            out.append(n % 128 + 128)
            n //= 128
        return bytes(out + [n])
    return b"\x00" + length(len(name)) + name + length(len(value)) + value


def grpc_refusal(stream: int, code: int, message: str) -> bytes:
    """The server's frames refusing gRPC call ``stream``: SETTINGS, a trailers-only response with
    grpc-status ``code`` and the percent-encoded grpc-message, then GOAWAY."""
    encoded = "".join(c if " " <= c <= "~" and c != "%" else "".join(f"%{b:02X}" for b in c.encode())
                      for c in message).encode()
    block = b"".join(_hpack_literal(n, v) for n, v in (
        (b":status", b"200"), (b"content-type", b"application/grpc"),
        (b"grpc-status", str(code).encode()), (b"grpc-message", encoded)))
    return (_h2_frame(0x4, 0, 0, b"") + _h2_frame(0x1, 0x5, stream, block)        # HEADERS: END_STREAM|END_HEADERS
            + _h2_frame(0x7, 0, 0, stream.to_bytes(4, "big") + b"\x00\x00\x00\x00"))   # GOAWAY, NO_ERROR


async def answer_grpc(client: TLSStream, code: int, message: str) -> None:
    """Refuse a gRPC client with a status it shows (grpc-status/grpc-message on its first call)
    instead of a closed connection it would retry: read its preface and frames up to the first
    HEADERS, within a deadline, and answer that stream. Anything unexpected just closes."""
    try:
        async with asyncio.timeout(REQUEST_HEAD_TIMEOUT):
            if await client.readexactly(len(_H2_PREFACE)) != _H2_PREFACE:
                return
            client.write(_h2_frame(0x4, 0, 0, b""))
            while True:
                head = await client.readexactly(9)
                size, kind, stream = int.from_bytes(head[:3], "big"), head[3], int.from_bytes(head[5:], "big") & 0x7FFFFFFF
                if size > _H2_MAX_FRAME:
                    return
                await client.readexactly(size)
                if kind == 0x1 and stream:
                    break
            client.write(grpc_refusal(stream, code, message)[9:])   # our SETTINGS went first
            await client.drain()
    except (TimeoutError, asyncio.IncompleteReadError, OSError, ssl.SSLError):
        pass
