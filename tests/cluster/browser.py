"""Debian's headless chromium driven through the DevTools protocol (a websocket, aiohttp's client).

Just what the web page's tests need: open a URL, evaluate JavaScript, save a screenshot. The
browser gets a fresh profile directory and a DevTools port it picks itself (DevToolsActivePort).
"""
from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--disable-breakpad", "--disable-crash-reporter", "--window-size=1280,800",
         "--remote-debugging-port=0"]


class BrowserError(Exception):
    pass


class Browser:
    def __init__(self, profile: Path, start_timeout: float = 60.0):
        self.profile = profile
        profile.mkdir(parents=True, exist_ok=True)
        home = {"HOME": str(profile), "XDG_CONFIG_HOME": str(profile / "config"), "XDG_CACHE_HOME": str(profile / "cache")}
        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                     env={**os.environ, **home},   # nothing written outside the profile
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.loop = asyncio.new_event_loop()
        self._ids = itertools.count(1)
        try:
            port = self._port(start_timeout)
            self._session = self.loop.run_until_complete(self._open(port))
        except BaseException:
            self.close()
            raise

    def _port(self, timeout: float) -> int:
        marker = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrowserError(f"chromium exited {self.proc.returncode}: {self.proc.stderr.read()[-2000:]}")
            if marker.exists() and marker.read_text().strip():
                return int(marker.read_text().split()[0])
            time.sleep(0.1)
        raise BrowserError(f"chromium wrote no DevTools port within {timeout} s")

    async def _open(self, port: int) -> tuple[aiohttp.ClientSession, Any]:
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        async with session.get(f"http://127.0.0.1:{port}/json/list") as r:
            targets = await r.json(content_type=None)
        page = next(t for t in targets if t.get("type") == "page")
        ws = await session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        return session, ws

    async def _call(self, method: str, params: dict[str, Any], timeout: float) -> dict[str, Any]:
        _, ws = self._session
        ident = next(self._ids)
        await ws.send_str(json.dumps({"id": ident, "method": method, "params": params}))
        async with asyncio.timeout(timeout):
            while True:
                msg = await ws.receive()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    raise BrowserError(f"DevTools connection ended during {method}: {msg.type}")
                data = json.loads(msg.data)
                if data.get("id") == ident:
                    if "error" in data:
                        raise BrowserError(f"{method}: {data['error']}")
                    return data.get("result", {})

    def call(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        return self.loop.run_until_complete(self._call(method, params, timeout))

    def navigate(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        session = getattr(self, "_session", None)
        if session is not None:
            self.loop.run_until_complete(session[1].close())
            self.loop.run_until_complete(session[0].close())
        self.loop.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()
