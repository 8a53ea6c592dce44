"""The container manager, plus overlay attachments: containers whose spec has ``Networks`` run in
the netns the data plane built for them, with its resolv.conf and hosts bind-mounted.

``ContainerManager`` (containers.py) knows nothing of overlays; this subclass changes only what
the namespace worker is told at start (``_init_spec``). Create, start and remove are wrapped by the
server, which calls the data plane around them (``NetworkDataplane.attach/ensure/detach``).
"""

from __future__ import annotations

from agent_runtime.containers import ContainerManager
from agent_runtime.network.dataplane import NetworkDataplane


class NetworkedContainerManager(ContainerManager):
    """A ContainerManager whose containers with ``Networks`` join the data plane's netns."""

    def __init__(self, *args, network: NetworkDataplane, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.network = network

    def _init_spec(self, c, cg) -> dict:
        spec = super()._init_spec(c, cg)
        if c.on_overlay():
            spec["network"] = {"mode": "path", "path": self.network.netns_path(c.id)}
            ops = spec["ops"]
            at = next((i for i, op in enumerate(ops) if op["kind"] in ("mask", "readonly")), len(ops))
            user_targets = {m.target for m in c.spec.mounts}
            extra = [op for op in self.network.mount_ops(c.id) if op["target"] not in user_targets]
            spec["ops"] = ops[:at] + extra + ops[at:]
        return spec
