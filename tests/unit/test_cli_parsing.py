"""Parsing of what users type: addresses (durations and sizes: test_syntax.py)."""

from __future__ import annotations

import pytest

from shoal.cli.output import rfc3339
from shoal.daemon import DaemonError, parse_addr


@pytest.mark.parametrize("text, expected", [("192.0.2.11", ("192.0.2.11", 2377)),
                                            ("192.0.2.11:4000", ("192.0.2.11", 4000)),
                                            ("[2001:db8::1]:2377", ("2001:db8::1", 2377))])
def test_addresses(text, expected):
    assert parse_addr(text, 2377, "remote address") == expected


@pytest.mark.parametrize("text, fragment", [("manager-one:2377", "expected IP"), ("192.0.2.1:23x7", "not a number"),
                                            ("192.0.2.1:70000", "out of range")])
def test_bad_addresses_name_the_problem(text, fragment):
    with pytest.raises(DaemonError, match=fragment) as err:
        parse_addr(text, 2377, "remote address")
    assert "invalid remote address" in str(err.value)


def test_rfc3339():
    assert rfc3339(0) == "0001-01-01T00:00:00Z"
    assert rfc3339(86400.5) == "1970-01-02T00:00:00.5Z"
