"""Shared by every test tier.

``SHOAL_STRICT=1`` (set by .ci/run) turns every skip into a failure: in CI an environment that
lacks something a test needs (root, a Debian package, a program) must fail loudly instead of going
green with the test not run. Expected failures (xfail) are left alone.

Helpers shared by test modules are in tests/support (the one FakeClock: tests/support/clock.py);
test modules do not import each other.
"""

from __future__ import annotations

import os

import pytest

STRICT = os.environ.get("SHOAL_STRICT") == "1"


def _strict(report: pytest.TestReport | pytest.CollectReport) -> None:
    if STRICT and report.skipped and not hasattr(report, "wasxfail"):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        report.outcome = "failed"
        report.longrepr = f"SHOAL_STRICT=1: a skip is a failure in CI: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    outcome = yield
    _strict(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> object:
    outcome = yield
    _strict(outcome.get_result())
