"""The web page of the cluster in a real browser (Debian's headless chromium over DevTools):
`shoal ui` bridges the browser to a manager's root-only socket (a follower's: every manager serves
it); the page shows the lab's 5 nodes and one card per current task, a `shoal service scale`
appears without a reload (the time it takes is printed: 2 s is the goal), and a node killed and started again goes down and up live."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cluster.browser import CHROMIUM, Browser
from tests.cluster.waiting import wait_for

pytestmark = pytest.mark.cluster

CARDS = "document.querySelectorAll('#board .task').length"
RUNNING_CARDS = "document.querySelectorAll('#board .task[data-state=running]').length"
COLUMNS = ("Array.from(document.querySelectorAll('#board .node')).map(n => [n.querySelector('.hostname').textContent,"
           " n.dataset.role, n.dataset.status, n.dataset.availability])")


@pytest.fixture(scope="module")
def follower(lab):
    """A manager that is not the leader: the page must not need the leader."""
    leader = wait_for(lambda: lab.leader(), 60, what="a leader")
    return next(m for m in ("manager1", "manager2", "manager3") if m != leader)


@pytest.fixture(scope="module")
def bridge(lab, follower):
    """`shoal ui` on a free loopback port of this (the host's) namespace, to the follower's socket; its URL."""
    env = {**os.environ, "SHOAL_HOST": f"unix://{lab.host(follower).socket}"}
    proc = subprocess.Popen([str(Path(sys.executable).with_name("shoal")), "ui", "--listen", "127.0.0.1:0"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        match = re.search(r"http://\S+/", line)
        assert match, f"shoal ui printed {line!r}; stderr: {proc.stderr.read() if proc.poll() is not None else ''}"
        yield match.group(0)
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.fixture()
def browser(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make install` installs Debian's chromium")
    b = Browser(tmp_path / "profile")
    yield b
    b.close()
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)


def screenshot(browser, tmp_path: Path, name: str) -> Path:
    """A screenshot in the test's tmp directory, copied to $SHOAL_TEST_ARTIFACTS if set (pytest
    keeps only its last few tmp directories); its paths printed."""
    shot = browser.screenshot(tmp_path / name)
    assert shot.stat().st_size > 1000
    kept = os.environ.get("SHOAL_TEST_ARTIFACTS")
    if kept:
        Path(kept).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(kept) / name)
    print(f"screenshot: {shot}" + (f" (and {Path(kept) / name})" if kept else ""))
    return shot


def running(lab, service: str) -> int:
    out = lab.shoal("manager1", "service", "ps", "--format", "json", "-f", "desired-state=running", service).stdout
    return sum(json.loads(line)["CurrentState"].startswith("Running") for line in out.splitlines() if line.strip())


def test_board_shows_nodes_and_tasks_and_follows_a_scale(lab, bridge, browser, image, tmp_path):
    lab.shoal("manager1", "service", "create", "--name", "web", "--replicas", "3", image, "sleep", "1d", timeout=120)
    try:
        wait_for(lambda: running(lab, "web") == 3, 90, what="3 web tasks running")
        browser.navigate(bridge)
        try:
            wait_for(lambda: browser.evaluate(RUNNING_CARDS) == 3, 30, what="3 running cards on the page")
        except AssertionError as err:
            raise AssertionError(f"{err}; the page says: {browser.evaluate('document.body.innerText')!r}") from None
        columns = browser.evaluate(COLUMNS)
        assert sorted(columns) == [[f"manager{i}", "manager", "ready", "active"] for i in (1, 2, 3)] + [
            [f"worker{i}", "worker", "ready", "active"] for i in (1, 2)]
        assert browser.evaluate(CARDS) == 3
        names = browser.evaluate("Array.from(document.querySelectorAll('#board .task .name')).map(e => e.textContent)")
        assert sorted(names) == ["web.1", "web.2", "web.3"]
        snapshots = browser.evaluate("document.body.dataset.snapshots")
        browser.evaluate("window.notReloaded = true")

        lab.shoal("manager1", "service", "scale", "--detach", "web=5", timeout=120)   # returns before the tasks run
        returned = time.monotonic()
        # The page follows the scale from its event stream, without a reload. How fast (the goal
        # is 2 s) is a figure, printed here and recorded in docs/web-ui.md, not an assert: on a
        # loaded CI machine the scale itself may take longer than that to commit.
        seen_after = wait_for(lambda: max(time.monotonic() - returned, 1e-6) if browser.evaluate(CARDS) == 5 else None, 60,
                              what="the page to show 5 cards after the scale")
        print(f"scale 3->5 on the page {seen_after:.2f} s after `shoal service scale --detach` returned")
        assert browser.evaluate("document.body.dataset.snapshots") != snapshots   # drawn from the stream...
        assert browser.evaluate("window.notReloaded") is True                    # ...not by a reload

        wait_for(lambda: browser.evaluate(RUNNING_CARDS) == 5, 90, what="5 running cards")
        screenshot(browser, tmp_path, "shoal-web-ui.png")

        # The service's page: its tasks and the events of the scale.
        browser.evaluate("document.querySelector('#board .task .name a').click()")   # a card links to its service
        wait_for(lambda: browser.evaluate("document.querySelectorAll('#service tbody tr').length > 5"), 30,
                 what="the service page's tasks and events")
        assert browser.evaluate("location.hash").startswith("#/service/")
        assert browser.evaluate("getComputedStyle(document.getElementById('board')).display") == "none"
        assert browser.evaluate("document.querySelectorAll('#service tr.current').length") == 5
        text = browser.evaluate("document.getElementById('service').textContent")
        assert "web" in text and "replicas.new=5" in text
        screenshot(browser, tmp_path, "shoal-web-ui-service.png")

        # A node killed and started again: its column goes down and comes back, live.
        browser.evaluate("location.hash = '#/'")
        status = "document.querySelector('#board .node[data-node-id]:nth-child(5)').dataset.status"
        assert browser.evaluate("document.querySelector('#board .node:nth-child(5) .hostname').textContent") == "worker2"
        lab.kill("worker2")
        try:
            wait_for(lambda: browser.evaluate(status) == "down", 60, what="worker2's column down")
            screenshot(browser, tmp_path, "shoal-web-ui-node-down.png")
        finally:
            lab.start("worker2")
        wait_for(lambda: browser.evaluate(status) == "ready", 60, what="worker2's column ready again")
        assert browser.evaluate("window.notReloaded") is True
    finally:
        lab.shoal("manager1", "service", "rm", "web", check=False)
