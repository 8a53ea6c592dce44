"""shoald: one per host, the composition root of the manager and worker roles.

- ``main``: arguments and logging; the exit status (non-zero when a role fails beyond recovery).
- ``config``: addresses and the node description derived from the host.
- ``roles``: the ``Daemon``: its node's roles run as one supervised task group, started, stopped
  and changed (promotion, demotion) here.
- ``membership``: swarm init, join and leave, and the node-to-manager calls they make.
- ``control``: the ControlAPI servicer on the root-only unix socket the ``shoal`` CLI talks to.
- ``info``: what ``shoal info`` shows.

Membership survives restarts through the state directory (shoal.nodestate); containers live in
shoal-runtimed and survive shoald restarts.
"""

import os

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")  # grpc core logs failed handshakes to stderr otherwise

from shoal.daemon.config import DaemonError, parse_addr  # noqa: E402
from shoal.daemon.main import main  # noqa: E402
from shoal.daemon.roles import Daemon  # noqa: E402

__all__ = ["Daemon", "DaemonError", "main", "parse_addr"]
