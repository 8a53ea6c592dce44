"""Docker's detach keys (agent_runtime/detachkeys.py) and the CLI's demultiplexer of Docker's
attach stream (shoal/cli/interactive.py)."""

from __future__ import annotations

import pytest

from agent_runtime.detachkeys import EscapeProxy, parse_detach_keys


@pytest.mark.parametrize("text, keys", [
    ("", b"\x10\x11"), ("ctrl-p,ctrl-q", b"\x10\x11"), ("ctrl-x,x", b"\x18x"), ("a,b,c", b"abc"),
    ("ctrl-@", b"\x00"), ("ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_", b"\x1b\x1c\x1d\x1e\x1f"), ("CTRL-A", b"\x01"),
])
def test_detach_keys_parse_as_docker(text, keys):
    assert parse_detach_keys(text) == keys


@pytest.mark.parametrize("text", ["ctrl-", "ctrl-1", "ab", "ctrl-p,,ctrl-q", "shift-a"])
def test_bad_detach_keys_are_refused_naming_them(text):
    with pytest.raises(ValueError, match="Invalid detach keys"):
        parse_detach_keys(text)


def test_escape_proxy_holds_a_prefix_and_detaches_on_the_whole_sequence():
    proxy = EscapeProxy(b"\x10\x11")
    assert proxy.feed(b"ls\r") == (b"ls\r", False)
    assert proxy.feed(b"\x10") == (b"", False)            # may begin the sequence: held back
    assert proxy.feed(b"x") == (b"\x10x", False)          # it did not: both go through
    assert proxy.feed(b"a\x10") == (b"a", False)
    assert proxy.feed(b"\x11rest") == (b"", True)         # the sequence itself is never passed on


def test_escape_proxy_across_reads_and_repeated_first_key():
    proxy = EscapeProxy(b"\x18x")
    assert proxy.feed(b"\x18") == (b"", False)
    assert proxy.feed(b"\x18") == (b"\x18\x18", False)   # Docker's proxy: a mismatch lets the held bytes go
    assert proxy.feed(b"\x18x") == (b"", True)
    assert EscapeProxy(b"").feed(b"\x10\x11") == (b"\x10\x11", False)


def test_demux_splits_frames_across_reads(capfd):
    from shoal.cli.interactive import Demux
    demux = Demux()
    data = b"\x01\x00\x00\x00\x00\x00\x00\x03out" + b"\x02\x00\x00\x00\x00\x00\x00\x03err"
    for i in range(len(data)):
        demux.feed(data[i:i + 1])
    out, err = capfd.readouterr()
    assert (out, err) == ("out", "err")
