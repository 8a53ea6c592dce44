"""shoal-runtimed stays quiet and tidy about normal events (issue 11, item 8): a client that stops
following logs is no error; a container's secrets tmpfs goes when its process ends.

Needs root; uses the session runtimed of conftest (its log is runtimed.log in its base dir).
"""

from __future__ import annotations

import base64

import pytest

from agent_runtime.api import ContainerSpec, File, InvalidArgument
from tests.support.runtime import IMAGE, mounted, wait_until

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(120)]


def test_a_client_closing_a_followed_log_is_not_an_error(client, runtimed):
    log = runtimed.base / "runtimed.log"
    start = log.stat().st_size
    cid = client.create(ContainerSpec(image=IMAGE, command=["sh", "-c", "while true; do echo tick; sleep 0.02; done"]))
    client.start(cid)
    for _ in range(3):                       # what `service logs -f` does when the user hits ^C
        stream = client.logs(cid, follow=True)
        next(stream)
        stream.close()
    # positive signal: the handlers wrote into closed streams (they write whenever lines arrive)
    seen = len(list(client.logs(cid)))
    assert wait_until(lambda: len(list(client.logs(cid))) > seen + 50)
    client.remove(cid, force=True)
    text = log.read_bytes()[start:].decode(errors="replace")
    assert "ERROR" not in text and "Traceback" not in text, text


def test_files_are_unmounted_when_the_container_exits(client, runtimed):
    secret = base64.b64encode(b"exit-secret\n").decode()
    cid = client.create(ContainerSpec(image=IMAGE, command=["cat", "/run/secrets/db"],
                                      files=[File(target="/run/secrets/db", data=secret)]))
    tmpfs = runtimed.root / "containers" / cid / "files"
    assert mounted(tmpfs)
    client.start(cid)
    client.wait(cid)
    assert "".join(r.log for r in client.logs(cid)) == "exit-secret\n"
    assert not mounted(tmpfs)
    with pytest.raises(InvalidArgument, match="its data is gone .*the container exited"):
        client.start(cid)
    client.remove(cid)
