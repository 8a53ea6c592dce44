"""Image removal against the real runtimed: an image a container uses (running or stopped) is
never deleted, and its layers stay while the container runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_runtime.api import Conflict, ContainerSpec
from tests.support.runtime import IMAGE

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(120)]


def test_rmi_of_an_image_a_running_container_uses_is_refused(runtimed):
    client = runtimed.client()
    image = client.image_inspect(IMAGE)
    client.image_tag(IMAGE, "example/in-use:1")
    copy = client.image_tag(IMAGE, "example/in-use:1")     # tagging twice is idempotent
    assert copy["Id"] == image["Id"]
    c = client.run(ContainerSpec(image="example/in-use:1", command=["sleep", "60"], name="uses-image"))
    try:
        assert client.image_remove("example/in-use:1") == [{"Untagged": "example/in-use:1"}]  # IMAGE still names it
        with pytest.raises(Conflict, match="cannot be forced.*uses-image"):
            client.image_remove(image["Id"], force=True)
        with pytest.raises(Conflict, match="must be forced.*running.*uses-image"):
            client.image_remove(image["Id"])
        assert image["Id"] not in [d.get("Deleted") for d in client.image_prune(all=True)["ImagesDeleted"]]
        assert all(Path(d).is_dir() for d in image["GraphDriver"]["Data"]["LowerDir"].split(":"))
        assert client.exec(c.id, ["true"]).exit_code == 0
    finally:
        client.remove(c.id, force=True)
    assert client.image_inspect(IMAGE)["Id"] == image["Id"]


def test_auto_remove_containers_go_when_they_exit(runtimed):
    """`shoal run -d --rm`: nobody waits, runtimed removes the container on exit (AutoRemove)."""
    import asyncio

    from agent_runtime.api import AsyncRuntimeClient

    async def scenario() -> list[str]:
        async with AsyncRuntimeClient(runtimed.socket) as client:
            stream = await client.events_stream()
            c = await client.start(await client.create(ContainerSpec(image=IMAGE, command=["true"],
                                                                     auto_remove=True)))
            seen = []
            async for ev in stream:
                if ev["Actor"]["ID"] == c.id:
                    seen.append(ev["Action"])
                    if ev["Action"] == "destroy":
                        break
            stream.close()
            assert c.id not in [x.id for x in await client.list(all=True)]
            return seen
    assert asyncio.run(scenario())[-2:] == ["die", "destroy"]


def test_auto_remove_after_runtimed_was_down(runtimed):
    """A container that exits while runtimed is stopped is removed when runtimed starts again."""
    client = runtimed.client()
    c = client.run(ContainerSpec(image=IMAGE, command=["sleep", "1"], auto_remove=True))
    runtimed.stop()
    import time
    time.sleep(1.5)   # let `sleep 1` end while nobody is watching (a wait, not an assertion on time)
    runtimed.start()
    client = runtimed.client()
    for _ in range(200):
        if c.id not in [x.id for x in client.list(all=True)]:
            break
        time.sleep(0.05)
    assert c.id not in [x.id for x in client.list(all=True)]
