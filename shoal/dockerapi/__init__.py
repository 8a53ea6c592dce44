"""The Docker Engine API subset shoald serves on its docker socket, so the stock `docker` CLI and
the `docker` Python SDK drive a Shoal cluster (docs/docker-api.md, docs/docker-api.yaml).

    serve(daemon, path) -> aiohttp AppRunner    listen on a root-only unix socket
    make_app(daemon) -> aiohttp Application     the routes, for tests
"""
from shoal.dockerapi.server import make_app, serve

__all__ = ["make_app", "serve"]
