"""A blocking client of the Raft port's protocol (manager/state/raft_transport.py), for tests that
play a peer: a candidate asking for votes, a peer with the wrong key, a peer sending bad frames."""

from __future__ import annotations

import os
import pickle
import socket
import struct
import zlib

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from manager.state import raft_transport as rt


class PeerClient:
    def __init__(self, addr: str, password: str | bytes, timeout: float = 10.0) -> None:
        host, port = addr.rsplit(":", 1)
        self.key = rt.derive_key(password)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.send_seq = self.recv_seq = 0

    def handshake(self, check_server: bool = True) -> None:
        nonce_c = os.urandom(rt.NONCE)
        self.sock.sendall(rt.MAGIC + nonce_c)
        reply = self.recv_exactly(rt.REPLY_SIZE)
        nonce_s, mac = reply[8:8 + rt.NONCE], reply[8 + rt.NONCE:]
        if check_server:
            assert mac == rt._mac(self.key, b"server", nonce_c, nonce_s), "the server does not know our key"
        self.sock.sendall(rt._mac(self.key, b"client", nonce_c, nonce_s))
        self.send_aead = AESGCM(rt._mac(self.key, b"c2s", nonce_c, nonce_s))
        self.recv_aead = AESGCM(rt._mac(self.key, b"s2c", nonce_c, nonce_s))

    def recv_exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("closed by the server")
            data += chunk
        return data

    def seal(self, message) -> bytes:
        sealed = self.send_aead.encrypt(self.send_seq.to_bytes(12, "little"),
                                        zlib.compress(pickle.dumps(message)), None)
        self.send_seq += 1
        return struct.pack("<I", len(sealed)) + sealed

    def send(self, message) -> None:
        self.sock.sendall(self.seal(message))

    def recv(self):
        (length,) = struct.unpack("<I", self.recv_exactly(4))
        data = self.recv_aead.decrypt(self.recv_seq.to_bytes(12, "little"), self.recv_exactly(length), None)
        self.recv_seq += 1
        return pickle.loads(zlib.decompress(data))

    def closed_by_server(self) -> bool:
        """Block until the server closes the connection (True) or the socket timeout passes."""
        try:
            while self.sock.recv(65536):
                pass
            return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()
