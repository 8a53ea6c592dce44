"""The Raft port's wire protocol: a mutual challenge-response handshake, then sealed, bounded frames.

Only peers that know the cluster's Raft key get past the handshake, and nothing a peer sends is
buffered beyond a fixed size, decompressed or unpickled before it is authenticated. No pysyncobj
here: ``Connection`` and ``Listener`` have the interface PySyncObj's transport expects of its
``TcpConnection`` and ``TcpServer``; manager.state.raft plugs them in.

Handshake (key K = HMAC-SHA256(raft password, "shoal raft transport v1")):

    client -> server   HELLO  = MAGIC (8) | client nonce Nc (32)
    server -> client   MAGIC (8) | server nonce Ns (32) | HMAC(K, "server" | Nc | Ns) (32)
    client -> server   HMAC(K, "client" | Nc | Ns) (32)

Each side reads exactly the bytes of the step it waits for; a wrong MAGIC or MAC closes the
connection at once, and a handshake not finished within ``handshake_timeout`` is closed too.
Session keys: HMAC(K, "c2s" | Nc | Ns) and HMAC(K, "s2c" | Nc | Ns). Frames, each way::

    u32 length | AES-256-GCM(session key, nonce = frame counter, zlib(pickle(message)))

A length above ``max_frame`` closes the connection before anything is read into memory; a frame
that does not authenticate (wrong key, altered, replayed or reordered: the counter is the nonce)
closes it; the plaintext is inflated to at most ``max_message`` bytes. An empty plaintext is a
keepalive (``Connection.keepalive``); a connection silent for ``timeout`` is closed.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import logging
import os
import pickle
import socket
import struct
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = logging.getLogger(__name__)

MAGIC = b"SHRAFT1\0"
NONCE = 32
MAC = 32
HELLO_SIZE = len(MAGIC) + NONCE
REPLY_SIZE = len(MAGIC) + NONCE + MAC
MAX_FRAME = 16 * 1024 * 1024        # an append-entries batch is <= 2 MiB; a snapshot chunk less
MAX_MESSAGE = 64 * 1024 * 1024
HANDSHAKE_TIMEOUT = 5.0
MAX_PENDING = 64                    # incoming connections not yet authenticated
_LEN = struct.Struct("<I")
_TAG = 16
_READ_CHUNK = 256 * 1024

# PySyncObj's constants (pysyncobj.poller.POLL_EVENT_TYPE, tcp_connection.CONNECTION_STATE);
# tests/unit/test_pysyncobj_internals.py checks they still match.
READ, WRITE, ERROR = 1, 2, 4
DISCONNECTED, CONNECTING, CONNECTED = 0, 1, 2

_HELLO, _REPLY, _CLIENT_MAC, _READY = "hello", "reply", "client-mac", "ready"


def derive_key(password: bytes | str) -> bytes:
    """The transport key of a cluster's Raft password."""
    if isinstance(password, str):
        password = password.encode()
    return hmac.new(password, b"shoal raft transport v1", hashlib.sha256).digest()


def _mac(key: bytes, *parts: bytes) -> bytes:
    return hmac.new(key, b"".join(parts), hashlib.sha256).digest()


class _Refusals:
    """Rate-limited warnings about refused connections (a scan or a flood must not flood the log)."""

    def __init__(self, period: float = 10.0) -> None:
        self.period = period
        self.count = 0
        self._last = -period
        self._suppressed = 0

    def reset(self) -> None:
        """Log the next refusal whenever it comes."""
        self._last = -self.period
        self._suppressed = 0

    def note(self, peer: str, reason: str) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self._last >= self.period:
            more = f" ({self._suppressed} more since the last report)" if self._suppressed else ""
            log.warning("raft port: closed a connection from %s: %s%s", peer, reason, more)
            self._last, self._suppressed = now, 0
        else:
            self._suppressed += 1


refusals = _Refusals()


class Connection:
    """One authenticated, framed connection (PySyncObj's TcpConnection interface).

    ``sock`` given: an accepted connection (we are the server side of the handshake). Otherwise
    ``connect()`` opens one (client side). ``on_ready`` is called once the handshake is done, and
    ``on_closed`` when the connection closes (the listener uses both to count pending ones).
    """

    def __init__(self, poller, key: bytes, *, sock: socket.socket | None = None, timeout: float,
                 handshake_timeout: float = HANDSHAKE_TIMEOUT, max_frame: int = MAX_FRAME,
                 max_message: int = MAX_MESSAGE) -> None:
        self.encryptor = None           # PySyncObj's own encryption stays off: frames are sealed here
        self.sendRandKey = None
        self.recvRandKey = None
        self._poller = poller
        self._key = key
        self.timeout = timeout
        self._handshake_timeout = handshake_timeout
        self._max_frame = max_frame
        self._max_message = max_message
        self._on_message: Callable | None = None
        self._on_connected: Callable | None = None
        self._on_disconnected: Callable | None = None
        self.on_ready: Callable[[Connection], None] | None = None
        self.on_closed: Callable[[Connection], None] | None = None
        self._sock: socket.socket | None = None
        self._fileno: int | None = None
        self._state = DISCONNECTED
        self._reset()
        if sock is not None:
            self._sock = sock
            self._fileno = sock.fileno()
            self._server = True
            self._phase = _HELLO
            self._state = CONNECTING
            try:
                self.peer = "%s:%s" % sock.getpeername()[:2]
            except OSError:
                self.peer = "?"
            self._poller.subscribe(self._fileno, self._on_event, READ | ERROR)

    def _reset(self) -> None:
        self._server = False
        self._phase = _HELLO
        self._need = 0
        self._inbuf = bytearray()
        self._frame_len: int | None = None
        self._outbuf = bytearray()
        self._nonce_c = self._nonce_s = b""
        self._send_aead: AESGCM | None = None
        self._recv_aead: AESGCM | None = None
        self._send_seq = self._recv_seq = 0
        self._started = self._last_read = self._last_send = time.monotonic()
        self.peer = "?"

    # -- PySyncObj's interface ---------------------------------------------------------------

    @property
    def state(self) -> int:
        return self._state

    def fileno(self) -> int | None:
        return self._fileno

    def setOnConnectedCallback(self, callback) -> None:  # noqa: N802 (PySyncObj's names)
        self._on_connected = callback

    def setOnMessageReceivedCallback(self, callback) -> None:  # noqa: N802
        self._on_message = callback

    def setOnDisconnectedCallback(self, callback) -> None:  # noqa: N802
        self._on_disconnected = callback

    def getSendBufferSize(self) -> int:  # noqa: N802
        return len(self._outbuf)

    def connect(self, host: str, port: int) -> bool:
        """Start connecting (client side); the handshake follows once the socket connects."""
        if host is None:
            return False
        self.disconnect()
        self._reset()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.setblocking(False)
        self.peer = f"{host}:{port}"
        try:
            self._sock.connect((host, port))
        except OSError as exc:
            if exc.errno not in (errno.EINPROGRESS, errno.EWOULDBLOCK):
                self._sock.close()
                self._sock = None
                return False
        self._fileno = self._sock.fileno()
        self._state = CONNECTING
        self._poller.subscribe(self._fileno, self._on_event, READ | WRITE | ERROR)
        return True

    def send(self, message) -> None:
        if self._phase != _READY or self._send_aead is None:
            return
        if time.monotonic() - self._last_read > self.timeout:
            self.disconnect()           # PySyncObj's rule: a peer silent for that long is gone
            return
        self._send_sealed(zlib.compress(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL), 3),
                          message.get("type") if isinstance(message, dict) else type(message).__name__)

    def keepalive(self, now: float) -> None:
        """Send an empty frame if nothing was sent for a quarter of ``timeout``.

        Both ends do, so a live connection never looks silent: two followers have nothing to say
        to each other until one stands for election, and its vote request must not find the
        connection timed out (that lost the request and cost a whole election timeout).
        """
        if self._phase == _READY and self._send_aead is not None and now - self._last_send > self.timeout / 4:
            self._send_sealed(b"", "keepalive")

    def _send_sealed(self, data: bytes, what: object) -> None:
        assert self._send_aead is not None
        sealed = self._send_aead.encrypt(self._send_seq.to_bytes(12, "little"), data, None)
        self._send_seq += 1
        if len(sealed) > self._max_frame:
            log.error("raft port: a %s message to %s is %d bytes, over the %d-byte frame limit; "
                      "closing the connection", what, self.peer, len(sealed), self._max_frame)
            self.disconnect()
            return
        self._last_send = time.monotonic()
        self._outbuf += _LEN.pack(len(sealed)) + sealed
        self._flush()

    def disconnect(self) -> None:
        was_open = self._state != DISCONNECTED
        if self._fileno is not None:
            self._poller.unsubscribe(self._fileno)
            self._fileno = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._state = DISCONNECTED
        self._inbuf = bytearray()
        self._outbuf = bytearray()
        self._send_aead = self._recv_aead = None
        if was_open:
            if self.on_closed is not None:
                self.on_closed(self)
            if self._on_disconnected is not None:
                self._on_disconnected()

    # -- timers --------------------------------------------------------------------------------

    def check_timeout(self, now: float, idle: bool = True) -> None:
        """Close a connection whose handshake takes too long, or (``idle``) one silent for longer
        than ``timeout`` (peers send keepalives, so only a dead or stuck peer is that silent)."""
        if self._state == DISCONNECTED:
            return
        if self._phase != _READY:
            if now - self._started > self._handshake_timeout:
                if self._server:
                    refusals.note(self.peer, f"no handshake within {self._handshake_timeout:.0f}s")
                self.disconnect()
        elif idle and now - self._last_read > self.timeout:
            self.disconnect()

    # -- events --------------------------------------------------------------------------------

    def _on_event(self, fd: int, events: int) -> None:
        if fd != self._fileno or self._sock is None:
            self._poller.unsubscribe(fd)
            return
        if events & ERROR:
            self.disconnect()
            return
        if self._state == CONNECTING and not self._server and events & (READ | WRITE):
            if self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self.disconnect()
                return
            if self._phase == _HELLO:
                self._nonce_c = os.urandom(NONCE)
                self._phase = _REPLY
                self._outbuf += MAGIC + self._nonce_c
        if events & WRITE:
            self._flush()
        if events & READ and self._sock is not None:
            self._read()
        self._subscribe()

    def _subscribe(self) -> None:
        if self._fileno is not None:
            mask = READ | ERROR | (WRITE if self._outbuf or self._state == CONNECTING and not self._server
                                   and self._phase == _HELLO else 0)
            self._poller.subscribe(self._fileno, self._on_event, mask)

    def _flush(self) -> None:
        while self._outbuf and self._sock is not None:
            try:
                sent = self._sock.send(self._outbuf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.disconnect()
                return
            if sent <= 0:
                break
            del self._outbuf[:sent]
        self._subscribe()

    def _recv_exactly(self, size: int) -> bytes | None:
        """Read towards ``size`` buffered bytes (never more); the bytes once complete, else None."""
        while len(self._inbuf) < size and self._sock is not None:
            try:
                chunk = self._sock.recv(min(size - len(self._inbuf), _READ_CHUNK))
            except (BlockingIOError, InterruptedError):
                return None
            except OSError:
                self.disconnect()
                return None
            if not chunk:
                self.disconnect()
                return None
            self._inbuf += chunk
        if self._sock is None:
            return None
        data = bytes(self._inbuf)
        self._inbuf = bytearray()
        return data

    def _refuse(self, reason: str) -> None:
        refusals.note(self.peer, reason)
        self.disconnect()

    def _read(self) -> None:
        while self._sock is not None:
            if self._phase == _HELLO:
                if not self._server:
                    return
                hello = self._recv_exactly(HELLO_SIZE)
                if hello is None:
                    return
                if not hello.startswith(MAGIC):
                    return self._refuse("not a shoal raft peer (wrong greeting)")
                self._nonce_c, self._nonce_s = hello[len(MAGIC):], os.urandom(NONCE)
                self._outbuf += MAGIC + self._nonce_s + _mac(self._key, b"server", self._nonce_c, self._nonce_s)
                self._phase = _CLIENT_MAC
                self._flush()
            elif self._phase == _REPLY:
                reply = self._recv_exactly(REPLY_SIZE)
                if reply is None:
                    return
                nonce_s, mac = reply[len(MAGIC):len(MAGIC) + NONCE], reply[len(MAGIC) + NONCE:]
                if not reply.startswith(MAGIC) or not hmac.compare_digest(
                        mac, _mac(self._key, b"server", self._nonce_c, nonce_s)):
                    return self._refuse("the server does not know this cluster's raft key")
                self._nonce_s = nonce_s
                self._outbuf += _mac(self._key, b"client", self._nonce_c, self._nonce_s)
                self._ready()
                if self._sock is None:
                    return
            elif self._phase == _CLIENT_MAC:
                client_mac = self._recv_exactly(MAC)
                if client_mac is None:
                    return
                if not hmac.compare_digest(client_mac, _mac(self._key, b"client", self._nonce_c, self._nonce_s)):
                    return self._refuse("the peer does not know this cluster's raft key")
                self._ready()
            else:
                if not self._read_frame():
                    return

    def _ready(self) -> None:
        c2s = _mac(self._key, b"c2s", self._nonce_c, self._nonce_s)
        s2c = _mac(self._key, b"s2c", self._nonce_c, self._nonce_s)
        self._send_aead = AESGCM(s2c if self._server else c2s)
        self._recv_aead = AESGCM(c2s if self._server else s2c)
        self._phase = _READY
        self._state = CONNECTED
        self._last_read = time.monotonic()
        self._flush()
        if self.on_ready is not None:
            self.on_ready(self)
        if not self._server and self._on_connected is not None and self._sock is not None:
            self._on_connected()

    def _read_frame(self) -> bool:
        """Read and deliver one frame; False when there is nothing (more) to read now."""
        if self._frame_len is None:
            header = self._recv_exactly(_LEN.size)
            if header is None:
                return False
            (length,) = _LEN.unpack(header)
            if length > self._max_frame or length < _TAG:
                self._refuse(f"a frame of {length} bytes (limit {self._max_frame})")
                return False
            self._frame_len = length
        sealed = self._recv_exactly(self._frame_len)
        if sealed is None:
            return False
        self._frame_len = None
        self._last_read = time.monotonic()
        try:
            data = self._recv_aead.decrypt(self._recv_seq.to_bytes(12, "little"), sealed, None)
        except InvalidTag:
            self._refuse("a frame that does not authenticate")
            return False
        self._recv_seq += 1
        if not data:
            return True                 # a keepalive
        inflater = zlib.decompressobj()
        try:
            plain = inflater.decompress(data, self._max_message)
            if inflater.unconsumed_tail:
                raise ValueError(f"over {self._max_message} bytes inflated")
            message = pickle.loads(plain)  # noqa: S301 (authenticated: only cluster managers get here)
        except Exception as exc:
            self._refuse(f"an undecodable message: {exc}")
            return False
        if self._on_message is not None:
            self._on_message(message)
        return self._sock is not None


class Listener:
    """The Raft port's listening socket (PySyncObj's TcpServer interface: bind, unbind).

    At most ``max_pending`` accepted connections may be in their handshake: a new one beyond
    that closes the oldest pending one, so a flood of idle connections costs a bounded amount of
    memory and cannot keep a real peer out for longer than its handshake takes.
    """

    def __init__(self, poller, host: str, port: int, key: bytes,
                 on_new_connection: Callable[[Connection], None], *, timeout: float,
                 max_pending: int = MAX_PENDING, handshake_timeout: float = HANDSHAKE_TIMEOUT,
                 max_frame: int = MAX_FRAME) -> None:
        self._poller = poller
        self._host, self._port = host, int(port)
        self._key = key
        self._on_new_connection = on_new_connection
        self.timeout = timeout
        self._max_pending = max_pending
        self._handshake_timeout = handshake_timeout
        self._max_frame = max_frame
        self._sock: socket.socket | None = None
        self._pending: OrderedDict[Connection, None] = OrderedDict()

    def bind(self) -> None:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setblocking(False)
            sock.bind((self._host, self._port))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._poller.subscribe(sock.fileno(), self._on_event, READ | ERROR)

    def unbind(self) -> None:
        if self._sock is not None:
            self._poller.unsubscribe(self._sock.fileno())
            self._sock.close()
            self._sock = None
        for conn in list(self._pending):
            conn.disconnect()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _on_event(self, fd: int, events: int) -> None:
        for _ in range(64):             # bounded work per tick; the rest wait in the backlog
            if self._sock is None:
                return
            try:
                sock, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("raft port: accept failed: %s", exc)
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while len(self._pending) >= self._max_pending:
                oldest, _ = self._pending.popitem(last=False)
                refusals.note(oldest.peer, f"over {self._max_pending} connections in their handshake")
                oldest.disconnect()
            conn = Connection(self._poller, self._key, sock=sock, timeout=self.timeout,
                              handshake_timeout=self._handshake_timeout, max_frame=self._max_frame)
            conn.on_ready = conn.on_closed = self._settled
            self._pending[conn] = None
            self._on_new_connection(conn)

    def _settled(self, conn: Connection) -> None:
        self._pending.pop(conn, None)
