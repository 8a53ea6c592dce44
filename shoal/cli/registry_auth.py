"""Registry credentials for ``shoal pull``/``push``: from the Docker ``config.json`` (``$DOCKER_CONFIG``
or ``~/.docker``), as the docker CLI finds them, encoded as Docker's ``X-Registry-Auth`` header for
shoal-runtimed. Kept apart from ``agent_runtime.images`` so the CLI does not import the registry
client (urllib, ssl) to read a JSON file.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from pathlib import Path

from agent_runtime.api import registry_auth_header

HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io")


def credentials(registry: str, config_path: str | os.PathLike | None = None) -> tuple[str, str] | None:
    """(username, password) for ``registry`` from ``auths`` in config.json, if it has any."""
    path = (Path(config_path) if config_path
            else Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "config.json")
    try:
        auths = json.loads(path.read_text()).get("auths") or {}
    except (OSError, ValueError, AttributeError):
        return None
    keys = [registry, f"https://{registry}", f"http://{registry}"]
    if registry == "docker.io":
        keys += HUB_KEYS
    for key in keys:
        entry = auths.get(key) or {}
        if not isinstance(entry, dict):
            continue
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                continue
            return user, password
        if entry.get("username"):
            return entry["username"], entry.get("password", "")
    return None


def auth_header(registry: str) -> str | None:
    found = credentials(registry)
    return registry_auth_header(found[0], found[1], registry) if found else None
