"""A small blocking HTTP/1.1 client over a unix socket, for ``RuntimeClient``.

One request per connection (``Connection: close``). Request bodies are bytes or a readable file
(sent chunked); responses are framed by Content-Length, chunked encoding or the end of the
connection, and read whole (``read``) or line by line as they stream (``readline``). Written
instead of using ``http.client`` because that module imports the email parser and ssl, a third
of the CLI's start-up for ``shoal run`` (docs/front-door.md).

Errors: ``TimeoutError`` when the socket times out, ``ConnectionError`` when the peer goes away,
``ProtocolError`` for an answer that is not HTTP.
"""

from __future__ import annotations

import socket
TYPE_CHECKING = False   # typing is not imported at run time: `shoal run` does not need it (docs/front-door.md)
if TYPE_CHECKING:
    from typing import BinaryIO

MAX_LINE = 65536      # a status or header line longer than this is not an answer from runtimed
MAX_HEADERS = 100


class ProtocolError(Exception):
    """The peer's answer is not well-formed HTTP/1.1."""


class Response:
    def __init__(self, sock: socket.socket) -> None:
        self._file = sock.makefile("rb")
        status_line = self._line("status line")
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise ProtocolError(f"not an HTTP status line: {status_line[:80]!r}")
        self.status = int(parts[1])
        self.headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS + 1):
            line = self._line("header")
            if line in (b"\r\n", b"\n"):
                break
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise ProtocolError(f"malformed header line {line[:80]!r}")
            self.headers[name.strip().lower()] = value.strip()
        else:
            raise ProtocolError(f"more than {MAX_HEADERS} headers")
        self._chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        length = self.headers.get("content-length")
        self._remaining: int | None = int(length) if length is not None and not self._chunked else None
        self._buffer = b""
        self._done = self.status in (204, 304) or self._remaining == 0

    def _line(self, what: str) -> bytes:
        line = self._file.readline(MAX_LINE + 1)
        if not line:
            raise ConnectionError(f"the connection closed while reading the {what}")
        if len(line) > MAX_LINE:
            raise ProtocolError(f"{what} longer than {MAX_LINE} bytes")
        return line

    def _next(self) -> bytes:
        """The next piece of the body (b"" at its end)."""
        if self._done:
            return b""
        if self._chunked:
            size_line = self._line("chunk size").split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise ProtocolError(f"malformed chunk size {size_line[:20]!r}") from None
            if size == 0:
                while self._line("trailer") not in (b"\r\n", b"\n"):
                    pass
                self._done = True
                return b""
            data = self._file.read(size)
            if len(data) < size:
                raise ConnectionError("the connection closed inside a chunk")
            self._line("chunk end")
            return data
        want = 65536 if self._remaining is None else min(self._remaining, 65536)
        data = self._file.read1(want) if want else b""
        if not data:
            if self._remaining:
                raise ConnectionError(f"the connection closed {self._remaining} bytes before the body's end")
            self._done = True
            return b""
        if self._remaining is not None:
            self._remaining -= len(data)
            self._done = self._remaining == 0
        return data

    def read(self) -> bytes:
        pieces = [self._buffer]
        self._buffer = b""
        while piece := self._next():
            pieces.append(piece)
        return b"".join(pieces)

    def read_chunk(self) -> bytes:
        """The next piece of the body as it arrives (b"" at its end), for a large download."""
        if self._buffer:
            piece, self._buffer = self._buffer, b""
            return piece
        return self._next()

    def readline(self) -> bytes:
        while b"\n" not in self._buffer:
            piece = self._next()
            if not piece:
                line, self._buffer = self._buffer, b""
                return line
            self._buffer += piece
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line + b"\n"

    def close(self) -> None:
        self._file.close()


class Connection:
    """Connects on ``request``; ``OSError`` from connect is the caller's to report."""

    def __init__(self, path: str, timeout: float | None) -> None:
        self.path = path
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self._response: Response | None = None

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        self.sock = sock

    def request(self, method: str, url: str, body: bytes | BinaryIO | None = None,
                headers: dict[str, str] | None = None) -> Response:
        if self.sock is None:
            self.connect()
        assert self.sock is not None
        head = {"Host": "localhost", "Connection": "close", **(headers or {})}
        streamed = body is not None and not isinstance(body, (bytes, bytearray))
        if streamed:
            head["Transfer-Encoding"] = "chunked"
        elif body is not None or method in ("POST", "PUT"):
            head["Content-Length"] = str(len(body or b""))
        text = f"{method} {url} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n"
        self.sock.sendall(text.encode("latin-1") + (body if isinstance(body, (bytes, bytearray)) else b""))
        if streamed:
            for chunk in iter(lambda: body.read(1 << 16), b""):  # type: ignore[union-attr]
                self.sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.sock.sendall(b"0\r\n\r\n")
        self._response = Response(self.sock)
        return self._response

    def close(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class Upgraded:
    """A connection after ``101 UPGRADED`` (Docker's hijack): the socket, and the bytes of the
    stream that arrived with the answer's head."""

    def __init__(self, sock: socket.socket, head: bytes) -> None:
        self.sock = sock
        self.head = head


def upgrade(path: str, method: str, url: str, body: bytes | None, timeout: float | None,
            headers: dict[str, str] | None = None) -> tuple[int, bytes, Upgraded | None]:
    """Send a request asking to upgrade the connection to a raw stream (``Upgrade: tcp``).

    Returns ``(101, b"", Upgraded)``, or ``(status, body, None)`` when the server answered otherwise
    (an error, or a plain 200 whose body is the stream: read to the end). ``OSError`` from
    connect is the caller's to report."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
        head = {"Host": "localhost", "Connection": "Upgrade", "Upgrade": "tcp", **(headers or {})}
        head["Content-Length"] = str(len(body or b""))
        text = f"{method} {url} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n"
        sock.sendall(text.encode("latin-1") + (body or b""))
        data = b""
        while b"\r\n\r\n" not in data:
            piece = sock.recv(65536)
            if not piece:
                raise ConnectionError("the connection closed before the answer's head")
            data += piece
            if len(data) > MAX_LINE * 4:
                raise ProtocolError("an answer's head longer than 256 KiB")
        head_bytes, _, rest = data.partition(b"\r\n\r\n")
        lines = head_bytes.split(b"\r\n")
        parts = lines[0].split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise ProtocolError(f"not an HTTP status line: {lines[0][:80]!r}")
        status = int(parts[1])
        if status == 101:
            sock.settimeout(None)
            return 101, b"", Upgraded(sock, rest)
        fields = {}
        for line in lines[1:]:
            name, _, value = line.decode("latin-1").partition(":")
            fields[name.strip().lower()] = value.strip()
        length = fields.get("content-length")
        chunks = [rest]
        received = len(rest)
        while length is None or received < int(length):
            piece = sock.recv(65536)
            if not piece:
                break
            chunks.append(piece)
            received += len(piece)
        payload = b"".join(chunks)
        if "chunked" in fields.get("transfer-encoding", "").lower():
            payload = _unchunk(payload)
        sock.close()
        return status, payload, None
    except BaseException:
        sock.close()
        raise


def _unchunk(data: bytes) -> bytes:
    out = []
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";", 1)[0] or b"0", 16)
        if size == 0:
            break
        out.append(data[:size])
        data = data[size + 2:]
    return b"".join(out)
