"""json-file log writer rotation, and reading with tail/since/follow."""

import json

from agent_runtime.logs import LogFollower, LogWriter, format_time, log_files, parse_time, read_logs
from tests.support.clock import FakeClock


def test_lines_are_docker_json_file_records(tmp_path):
    path = tmp_path / "c-json.log"
    w = LogWriter(path, 1 << 20, 3, clock=FakeClock(1_700_000_000 * 10**9, step=10**9))
    w.feed("stdout", b"hello\nwor")
    w.feed("stderr", b"oops\n")
    w.feed("stdout", b"ld\n")
    w.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["stream"], r["log"]) for r in lines] == [("stdout", "hello\n"), ("stderr", "oops\n"), ("stdout", "world\n")]
    assert lines[0]["time"].endswith("Z") and parse_time(lines[0]["time"]) == 1_700_000_001 * 10**9


def test_rotation_keeps_max_files_and_reads_in_order(tmp_path):
    path = tmp_path / "c-json.log"
    w = LogWriter(path, 4096, 3, clock=FakeClock(1_700_000_000 * 10**9, step=10**9))
    for i in range(400):
        w.feed("stdout", f"line {i:04d}\n".encode())
    w.close()
    files = log_files(path)
    assert [f.name for f in files] == ["c-json.log.2", "c-json.log.1", "c-json.log"]
    assert all(f.stat().st_size <= 4096 for f in files)
    records = read_logs(path)
    numbers = [int(r.log.split()[1]) for r in records]
    assert numbers == list(range(numbers[0], 400))  # contiguous, oldest dropped
    assert numbers[0] > 0
    assert [r.log for r in read_logs(path, tail=2)] == ["line 0398\n", "line 0399\n"]
    assert read_logs(path, tail=0) == []
    since = parse_time(records[-3].time)
    assert [r.log for r in read_logs(path, since_ns=since)] == ["line 0397\n", "line 0398\n", "line 0399\n"]


def test_long_lines_are_split_and_stream_filter(tmp_path):
    path = tmp_path / "c-json.log"
    w = LogWriter(path, 1 << 20, 1)
    w.feed("stdout", b"x" * 40000 + b"\n")
    w.feed("stderr", b"e\n")
    w.close()
    out = read_logs(path, streams=("stdout",))
    assert [len(r.log) for r in out] == [16384, 16384, 40000 - 32768 + 1]
    assert [r.log for r in read_logs(path, streams=("stderr",))] == ["e\n"]


def test_follower_sees_appends_across_rotation(tmp_path):
    path = tmp_path / "c-json.log"
    w = LogWriter(path, 4096, 2, clock=FakeClock(1_700_000_000 * 10**9, step=10**9))
    w.feed("stdout", b"before\n")
    f = LogFollower(path)
    assert f.poll() == []
    seen = []
    for i in range(200):
        w.feed("stdout", f"n{i}\n".encode())
        if i % 37 == 0:
            seen += f.poll()
    seen += f.poll()
    assert [r.log for r in seen] == [f"n{i}\n" for i in range(200)]


def test_format_time_round_trip():
    assert parse_time(format_time(1_700_000_000_123_456_789)) == 1_700_000_000_123_456_789
