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
        assert all(Path(d).is_dir() for d in image["GraphDriver"]["Data"]["LowerDirs"])
        assert client.exec(c.id, ["true"]).exit_code == 0
    finally:
        client.remove(c.id, force=True)
    assert client.image_inspect(IMAGE)["Id"] == image["Id"]
