"""The modules a short runtime command of the CLI (`shoal run`, `shoal image …`) must not load
(hmac and _hashlib: OpenSSL, through `secrets`):
their start-up is most of `shoal run --rm`'s time (bench/runtime.py --cli-only, docs/front-door.md)."""

from __future__ import annotations

HEAVY = ("grpc", "google.protobuf", "aiohttp", "asyncio", "common.gotemplate", "proto.objects_pb2",
         "agent_runtime.images.registry", "agent_runtime.images.store", "shoal.cli.services", "http.client",
         "ssl", "email", "hmac", "_hashlib")


def heavy_in(modules) -> set[str]:
    """Those of ``modules`` (names) that are or are inside one of HEAVY."""
    return {m for m in modules for heavy in HEAVY if m == heavy or m.startswith(heavy + ".")}
