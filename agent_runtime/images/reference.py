"""Image references, normalised the way Docker does.

``busybox`` -> ``docker.io/library/busybox:latest``; ``127.0.0.1:5000/shoal/busybox`` keeps its
registry. A reference has a tag, a digest, or both. ``familiar`` is the short form Docker prints.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InvalidReference

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
# docker.io is an alias; its API lives on another host.
REGISTRY_API_HOSTS = {"docker.io": "registry-1.docker.io", "index.docker.io": "registry-1.docker.io"}

_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_HOST = re.compile(r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?\.?)+(?::[0-9]+)?$|^\[[0-9a-fA-F:.]+\](?::[0-9]+)?$")


@dataclass(frozen=True)
class Reference:
    """A parsed, normalised image reference. ``tag`` is None only when ``digest`` is set."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``registry/repository``: the key under which tags are indexed."""
        return f"{self.registry}/{self.repository}"

    @property
    def familiar_name(self) -> str:
        """The repository as Docker prints it (``busybox``, ``127.0.0.1:5000/shoal/busybox``)."""
        if self.registry != DEFAULT_REGISTRY:
            return self.name
        if self.repository.startswith("library/") and self.repository.count("/") == 1:
            return self.repository[len("library/"):]
        return self.repository

    @property
    def reference(self) -> str:
        """What to ask the registry for: the digest if there is one, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    @property
    def api_host(self) -> str:
        """The host[:port] serving the distribution API for this registry."""
        return REGISTRY_API_HOSTS.get(self.registry, self.registry)

    def with_tag(self, tag: str) -> "Reference":
        return Reference(self.registry, self.repository, tag, None)

    @property
    def familiar(self) -> str:
        """Short form: ``busybox:latest``, ``shoal/busybox@sha256:...``."""
        return self._format(self.familiar_name)

    def __str__(self) -> str:
        return self._format(self.name)

    def _format(self, name: str) -> str:
        out = name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def parse_reference(ref: str, *, default_tag: bool = True) -> Reference:
    """Parse and normalise ``ref``; raise InvalidReference naming it when malformed.

    With ``default_tag`` a reference without tag or digest gets ``latest``.
    """
    if not ref or ref != ref.strip():
        raise InvalidReference(ref, "empty or surrounded by whitespace")
    remainder, digest = ref, None
    if "@" in ref:
        remainder, digest = ref.split("@", 1)
        if not _DIGEST.match(digest):
            raise InvalidReference(ref, f"digest {digest!r} is not sha256:<64 hex>")
    tag = None
    last_slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    if colon > last_slash:
        remainder, tag = remainder[:colon], remainder[colon + 1:]
        if not _TAG.match(tag):
            raise InvalidReference(ref, f"tag {tag!r} is not valid")
    parts = remainder.split("/")
    first = parts[0]
    if len(parts) > 1 and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        registry, path = first, parts[1:]
        if not _HOST.match(registry):
            raise InvalidReference(ref, f"registry {registry!r} is not host[:port]")
    else:
        registry, path = DEFAULT_REGISTRY, parts
    if registry == "index.docker.io":
        registry = DEFAULT_REGISTRY
    if registry == DEFAULT_REGISTRY and len(path) == 1:
        path = ["library", *path]
    for component in path:
        if not _COMPONENT.match(component):
            raise InvalidReference(ref, f"repository component {component!r} must be lowercase [a-z0-9._-]")
    repository = "/".join(path)
    if len(registry) + 1 + len(repository) > 255:
        raise InvalidReference(ref, "name longer than 255 characters")
    if tag is None and digest is None and default_tag:
        tag = DEFAULT_TAG
    return Reference(registry, repository, tag, digest)


def is_digest(value: str) -> bool:
    """True when ``value`` is ``sha256:<64 hex>``."""
    return bool(_DIGEST.match(value))
