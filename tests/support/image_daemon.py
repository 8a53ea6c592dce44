"""shoal-runtimed's image endpoints, served for real on a unix socket, without the container half.

The app is built the way ``agent_runtime.server`` builds it (the same ImageAPI, middleware and
ImageStore), runs on its own asyncio loop in a thread, and is reached with the real
``RuntimeClient``. ``users``/``running`` stand for the container manager's in-use answers, so
in-use protection can be tested without root.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from types import SimpleNamespace

from aiohttp import web

from agent_runtime import metrics as runtime_metrics
from agent_runtime.api import RuntimeClient
from agent_runtime.image_api import ImageAPI, open_store
from agent_runtime.server import errors_middleware


class ImageDaemon:
    def __init__(self, base: Path, insecure_registries: tuple[str, ...] = (), mirrors: tuple[str, ...] = ()) -> None:
        self.socket = str(base / "runtimed.sock")
        self.users: dict[str, list[str]] = {}      # image id -> container names
        self.running: dict[str, list[str]] = {}
        self.store = open_store(base / "images", in_use=lambda i: self.users.get(i, []),
                                running=lambda i: self.running.get(i, []))
        self.daemon = SimpleNamespace(images=self.store, insecure_registries=insecure_registries,
                                      registry_mirrors=mirrors,
                                      metrics=runtime_metrics.RuntimeMetrics(SimpleNamespace(containers={})))
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application(middlewares=[errors_middleware], client_max_size=64 * 1024 * 1024)
        ImageAPI(self.daemon).add_routes(app.router)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.UnixSite(self.runner, self.socket).start())
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.runner.cleanup())
        self.loop.close()

    def start(self) -> "ImageDaemon":
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def client(self) -> RuntimeClient:
        return RuntimeClient(self.socket, timeout=60)


if __name__ == "__main__":      # python -m tests.support.image_daemon BASE: serve until killed
    import sys
    import time
    ImageDaemon(Path(sys.argv[1])).start()
    print("ready", flush=True)
    while True:
        time.sleep(60)
