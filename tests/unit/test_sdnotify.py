"""sd_notify: the datagram systemd reads from a Type=notify unit, and silence outside systemd."""
from __future__ import annotations

import os
import socket

from agent_runtime import sdnotify


def test_ready_sends_one_datagram_with_ready_status_and_pid(tmp_path, monkeypatch):
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert sdnotify.ready("serving on /run/shoal/shoal.sock")
        lines = server.recv(4096).decode().split("\n")
    assert lines == ["READY=1", "STATUS=serving on /run/shoal/shoal.sock", f"MAINPID={os.getpid()}"]


def test_abstract_socket_address(monkeypatch):
    name = f"shoal-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.stopping()
        assert server.recv(4096).decode() == "STOPPING=1\nSTATUS=stopping"


def test_outside_systemd_nothing_is_sent(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.ready("x") is False


def test_a_dead_notify_socket_is_reported_not_raised(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert sdnotify.ready("x") is False
    assert "sd_notify" in caplog.text
