"""A server-side TLS session over a plain asyncio stream, run on OpenSSL's memory BIOs.

Why not asyncio's ``start_tls``: when the handshake fails (no client certificate, another CA's,
an expired one), asyncio aborts the transport without sending the alert OpenSSL wrote, so the
client only sees the connection end ("EOF"). Here the alert is flushed first, and the client says
what is wrong (Go's ``remote error: tls: certificate required``, ``unknown certificate authority``,
``expired certificate``), as it would against dockerd.

The session offers what shoal.daemon.remote and shoal.daemon.refusals use of a StreamReader and a
StreamWriter: ``read``, ``readexactly``, ``readuntil``, ``write``, ``drain``, ``close``.
"""

from __future__ import annotations

import asyncio
import ssl

_CHUNK = 64 * 1024


class TLSStream:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, context: ssl.SSLContext):
        self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.ssl = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._reader, self._writer = reader, writer
        self._buffer = bytearray()
        self._eof = False

    def _send(self) -> None:
        data = self._outgoing.read()
        if data:
            self._writer.write(data)

    async def _receive(self) -> bool:
        """More bytes from the peer into OpenSSL; False once the peer closed."""
        data = await self._reader.read(_CHUNK)
        if not data:
            self._incoming.write_eof()
            return False
        self._incoming.write(data)
        return True

    async def handshake(self) -> None:
        """Complete the server handshake; ssl.SSLError (after the alert went out) or
        ConnectionResetError if the peer closed first. The caller bounds it with a deadline."""
        while True:
            try:
                self.ssl.do_handshake()
            except ssl.SSLWantReadError:
                self._send()
                await self._writer.drain()
                if not await self._receive():
                    raise ConnectionResetError("the client closed the connection during the TLS handshake") from None
                continue
            except ssl.SSLError:
                self._send()        # the alert: the client learns why
                try:
                    await self._writer.drain()
                except OSError:
                    pass
                raise
            self._send()
            await self._writer.drain()
            return

    async def _decrypted(self) -> bytes:
        """The next decrypted bytes; b"" at the end (close_notify or the connection closed)."""
        while not self._eof:
            try:
                data = self.ssl.read(_CHUNK)
            except ssl.SSLWantReadError:
                self._send()        # e.g. a key update's answer
                await self._receive()   # at the end, OpenSSL reports it on the next read
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                data = b""
            self._send()
            if not data:            # the peer's close_notify: Python returns b"" rather than raising
                self._eof = True
            return data
        return b""

    async def read(self, n: int = -1) -> bytes:
        if self._buffer:
            data = bytes(self._buffer if n < 0 else self._buffer[:n])
            del self._buffer[:len(data)]
            return data
        data = await self._decrypted()
        if 0 <= n < len(data):
            self._buffer += data[n:]
            data = data[:n]
        return data

    async def readexactly(self, n: int) -> bytes:
        while len(self._buffer) < n:
            data = await self._decrypted()
            if not data:
                partial = bytes(self._buffer)
                self._buffer.clear()
                raise asyncio.IncompleteReadError(partial, n)
            self._buffer += data
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    async def readuntil(self, separator: bytes, limit: int = _CHUNK) -> bytes:
        while (index := self._buffer.find(separator)) < 0:
            if len(self._buffer) > limit:
                raise asyncio.LimitOverrunError("separator not found within the limit", len(self._buffer))
            data = await self._decrypted()
            if not data:
                partial = bytes(self._buffer)
                self._buffer.clear()
                raise asyncio.IncompleteReadError(partial, None)
            self._buffer += data
        end = index + len(separator)
        data = bytes(self._buffer[:end])
        del self._buffer[:end]
        return data

    def write(self, data: bytes) -> None:
        self.ssl.write(data)
        self._send()

    async def drain(self) -> None:
        await self._writer.drain()

    def can_write_eof(self) -> bool:
        return False

    def close(self) -> None:
        """Send close_notify (without waiting for the peer's) and close the connection."""
        try:
            self.ssl.unwrap()
        except (ssl.SSLError, ValueError, OSError):
            pass
        self._send()
        self._writer.close()
