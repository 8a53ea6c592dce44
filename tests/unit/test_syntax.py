"""common.syntax: one grammar per kind of value, Docker's, for the CLI, stacks and the ControlAPI.

The expected values and messages are Go's and the docker CLI's (time.ParseDuration, go-units
RAMInBytes, opts.NanoCPUs, opts.ParseEnvFile, strconv.ParseUint(s, 0, 32))."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common import syntax
from proto import objects_pb2 as pb


@pytest.mark.parametrize("text, seconds", [
    ("5s", 5), ("500ms", 0.5), ("1m30s", 90), ("2h", 7200), ("2h45m", 9900), ("0", 0), ("-1.5h", -5400),
    ("+5s", 5), ("1.5s", 1.5), (".5s", 0.5), ("1.s", 1), ("300us", 0.0003), ("300µs", 0.0003), ("10ns", 1e-8),
    ("1h1m1s1ms", 3661.001),
])
def test_go_durations(text, seconds):
    assert syntax.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text, message", [
    ("1.5", 'time: missing unit in duration "1.5"'),
    ("5", 'time: missing unit in duration "5"'),
    ("5x", 'time: unknown unit "x" in duration "5x"'),
    ("1m 30s", 'time: unknown unit "m " in duration "1m 30s"'),
    ("", 'time: invalid duration ""'),
    ("s5", 'time: invalid duration "s5"'),
    (".s", 'time: invalid duration ".s"'),
    ("-", 'time: invalid duration "-"'),
])
def test_bad_durations_say_what_go_says(text, message):
    with pytest.raises(ValueError) as err:
        syntax.parse_duration(text)
    assert str(err.value) == message


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (5, "5s"), (90, "1m30s"), (3600, "1h0m0s"), (0.5, "500ms"),
                                           (1.5, "1.5s"), (0.000001, "1µs"), (-5, "-5s")])
def test_format_duration_is_go_duration_string(seconds, text):
    assert syntax.format_duration(seconds) == text


@given(st.integers(min_value=0, max_value=10**15))
def test_format_then_parse_duration_round_trips(nanos):
    assert round(syntax.parse_duration(syntax.format_duration(nanos / 1e9)) * 1e9) == nanos


@pytest.mark.parametrize("value, expected", [
    ("64M", 64 << 20), ("1G", 1 << 30), ("512k", 512 << 10), ("1.5g", int(1.5 * 2**30)), ("1048576", 1 << 20),
    ("64MiB", 64 << 20), ("64mb", 64 << 20), ("64 MB", 64 << 20), ("10b", 10), (4096, 4096), ("1p", 1 << 50),
])
def test_sizes(value, expected):
    assert syntax.parse_bytes(value) == expected


@pytest.mark.parametrize("value", ["", "M", "64X", "-1G", "1 2", " 64M", True, 1.5, -1, "1e3"])
def test_bad_sizes(value):
    with pytest.raises(ValueError, match="invalid size"):
        syntax.parse_bytes(value)


@pytest.mark.parametrize("value, expected", [("0.5", 500_000_000), ("2", 2_000_000_000), ("0.001", 1_000_000),
                                             (1.5, 1_500_000_000), (2, 2_000_000_000), ("0", 0), ("1/4", 250_000_000)])
def test_cpus(value, expected):
    assert syntax.parse_cpus(value) == expected


@pytest.mark.parametrize("value, message", [("half", "failed to parse half as a rational number"),
                                            ("-1", "must not be negative"),
                                            ("0.0000000001", "value is too precise"), (True, "rational")])
def test_bad_cpus(value, message):
    with pytest.raises(ValueError, match=message):
        syntax.parse_cpus(value)


def test_env_file_is_read_as_docker_reads_it():
    text = ("\ufeffA=1\n  # comment\n\n   B= spaced value  \nC='quoted'\nD\nE=\nF=a=b\nUNSET\n")
    assert syntax.parse_env_file(text) == [(1, "A", "1"), (4, "B", " spaced value  "), (5, "C", "'quoted'"),
                                           (6, "D", None), (7, "E", ""), (8, "F", "a=b"), (9, "UNSET", None)]
    assert syntax.env_file_lines(text, {"D": "from-env"}) == [
        "A=1", "B= spaced value  ", "C='quoted'", "D=from-env", "E=", "F=a=b"]


@pytest.mark.parametrize("text, message", [
    ("OK=1\nexport X=1\n", "line 2: poorly formatted environment: variable 'export X' contains whitespaces"),
    ("A B=1\n", "line 1: poorly formatted environment: variable 'A B' contains whitespaces"),
    ("=value\n", "line 1: poorly formatted environment: no variable name on line '=value'"),
])
def test_bad_env_file_lines_name_the_line(text, message):
    with pytest.raises(ValueError) as err:
        syntax.parse_env_file(text)
    assert str(err.value) == message


@pytest.mark.parametrize("value, mode", [("0444", 0o444), ("0o440", 0o440), ("292", 292), ("0x124", 0o444),
                                         (0o400, 0o400), ("0", 0)])
def test_file_modes_are_go_base_0(value, mode):
    assert syntax.parse_file_mode(value) == mode


@pytest.mark.parametrize("value", ["rw", "0999", "-1", "070000", True, ""])
def test_bad_file_modes(value):
    with pytest.raises(ValueError, match="invalid mode specified"):
        syntax.parse_file_mode(value)


def test_file_defaults_are_root_and_0444_unless_given():
    target = pb.FileTarget()
    syntax.with_file_defaults(target, "db_password")
    assert (target.name, target.uid, target.gid, target.mode) == ("db_password", "0", "0", 0o444)
    given_target = pb.FileTarget(name="pw", uid="1000", gid="1000", mode=0o400)
    syntax.with_file_defaults(given_target, "db_password")
    assert (given_target.name, given_target.uid, given_target.gid, given_target.mode) == ("pw", "1000", "1000", 0o400)


@pytest.mark.parametrize("text, expected", [("10m", 1000.0 - 600), ("1136073600", 1136073600.0),
                                            ("1136073600.5", 1136073600.5),
                                            ("2006-01-01T00:00:00Z", 1136073600.0), ("2006-01-01", 1136073600.0)])
def test_since_takes_durations_timestamps_and_unix_seconds(text, expected):
    assert syntax.parse_since(text, now=1000.0) == pytest.approx(expected)


def test_bad_since_names_the_forms():
    with pytest.raises(ValueError, match="duration such as 10m"):
        syntax.parse_since("yesterday", now=0)
