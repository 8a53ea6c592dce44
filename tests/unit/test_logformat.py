"""The daemons' log format: every record is one parseable logfmt (or JSON) line, context kept."""
from __future__ import annotations

import io
import json
import logging

import pytest
from hypothesis import given, strategies as st

from agent_runtime.logformat import JsonFormatter, LogfmtFormatter, configure, logfmt_value, parse_logfmt


def record(msg, *args, exc=False, **extra):
    logger = logging.getLogger("manager.dispatcher")
    rec = logger.makeRecord("manager.dispatcher", logging.WARNING, __file__, 1, msg, args, None, extra=extra)
    if exc:
        try:
            raise RuntimeError("boom\nsecond line")
        except RuntimeError:
            import sys
            rec.exc_info = sys.exc_info()
    return rec


def test_logfmt_line_has_time_level_component_msg_and_context_in_order():
    line = LogfmtFormatter().format(record("node %s down", "n1", node="3f2a", task="t 1"))
    fields = parse_logfmt(line)
    assert list(fields)[:4] == ["time", "level", "component", "msg"]
    assert fields["level"] == "warning"
    assert fields["component"] == "manager.dispatcher"
    assert fields["msg"] == "node n1 down"
    assert fields["node"] == "3f2a" and fields["task"] == "t 1"
    assert fields["time"].endswith("Z") and "T" in fields["time"] and " " not in fields["time"]


def test_a_traceback_stays_on_one_line_and_round_trips():
    line = LogfmtFormatter().format(record("failed", exc=True))
    assert "\n" not in line
    exc = parse_logfmt(line)["exc"]
    assert exc.startswith("Traceback") and "boom\nsecond line" in exc


def test_json_lines_carry_the_same_fields():
    doc = json.loads(JsonFormatter().format(record("hello %d", 3, service="web")))
    assert doc["msg"] == "hello 3" and doc["service"] == "web" and doc["level"] == "warning"


@given(st.text())
def test_any_message_round_trips_through_logfmt(text):
    line = f"msg={logfmt_value(text)} k=v"
    assert "\n" not in line
    assert parse_logfmt(line) == {"msg": text, "k": "v"}


@pytest.mark.parametrize("bad", ['msg="unterminated', 'novalue', 'k=v"x', 'a="b"c'])
def test_parse_refuses_what_is_not_logfmt(bad):
    with pytest.raises(ValueError):
        parse_logfmt(bad)


def test_configure_names_the_allowed_values():
    with pytest.raises(ValueError, match="text, json"):
        configure("info", "xml")
    with pytest.raises(ValueError, match="debug, info"):
        configure("loud", "text")


def test_configure_routes_records_to_the_stream_in_the_chosen_format():
    out = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure("info", "json", out)
        logging.getLogger("worker.agent").info("session open", extra={"node": "n9"})
        logging.getLogger("worker.agent").debug("not shown")
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["node"] == "n9"
