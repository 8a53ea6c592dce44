"""agent_runtime.unixhttp, the CLI's HTTP client to runtimed: framings, streaming lines, chunked
uploads, and answers that are cut or not HTTP."""
from __future__ import annotations

import io
import socket
import threading

import pytest

from agent_runtime.unixhttp import Connection, ProtocolError


def serve(tmp_path, answer: bytes) -> tuple[str, list[bytes]]:
    """A one-shot server: reads the request (until its end), sends ``answer``, closes."""
    path = str(tmp_path / "s.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(1)
    got: list[bytes] = []

    def run() -> None:
        conn, _ = listener.accept()
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        if b"chunked" in data:
            while not data.endswith(b"0\r\n\r\n"):
                data += conn.recv(65536)
        elif b"Content-Length: " in data:
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            while len(body) < length:
                body += conn.recv(65536)
            data = head + b"\r\n\r\n" + body
        got.append(data)
        conn.sendall(answer)
        conn.close()
        listener.close()
    threading.Thread(target=run, daemon=True).start()
    return path, got


def test_content_length_and_json_body(tmp_path):
    path, got = serve(tmp_path, b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"a\": true}")
    conn = Connection(path, 10)
    resp = conn.request("POST", "/x?y=1", b'{"k":1}', {"Content-Type": "application/json"})
    assert resp.status == 200 and resp.read() == b'{"a": true}'
    conn.close()
    assert got[0].startswith(b"POST /x?y=1 HTTP/1.1\r\n") and b"Content-Length: 7" in got[0]
    assert got[0].endswith(b'{"k":1}')


def test_chunked_stream_lines_across_chunks_and_chunked_upload(tmp_path):
    body = b"5\r\n{\"a\":\r\n4\r\n1}\n{\r\n7\r\n\"b\":2}\n\r\n0\r\n\r\n"
    path, got = serve(tmp_path, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    conn = Connection(path, 10)
    resp = conn.request("POST", "/images/load", io.BytesIO(b"x" * 100_000))
    assert [resp.readline(), resp.readline(), resp.readline()] == [b'{"a":1}\n', b'{"b":2}\n', b""]
    conn.close()
    assert b"Transfer-Encoding: chunked" in got[0] and got[0].count(b"x") == 100_000


def test_body_until_close_and_no_body(tmp_path):
    path, _ = serve(tmp_path, b"HTTP/1.1 200 OK\r\n\r\nline one\nrest")
    conn = Connection(path, 10)
    resp = conn.request("GET", "/events")
    assert resp.readline() == b"line one\n" and resp.read() == b"rest"
    conn.close()


@pytest.mark.parametrize("answer, error", [
    (b"SSH-2.0-OpenSSH\r\n\r\n", ProtocolError),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort", ConnectionError),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", ProtocolError),
    (b"", ConnectionError),
    (b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 200 + b"\r\n", ProtocolError),
])
def test_cut_or_foreign_answers_raise(tmp_path, answer, error):
    path, _ = serve(tmp_path, answer)
    conn = Connection(path, 10)
    with pytest.raises(error):
        conn.request("GET", "/version").read()
    conn.close()


def test_a_silent_server_times_out(tmp_path):
    path = str(tmp_path / "s.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(1)
    conn = Connection(path, 0.2)
    with pytest.raises(TimeoutError):
        conn.request("GET", "/version")
    conn.close()
    listener.close()
