"""Reading a runtimed request: its JSON body and its boolean query flags, one way for every route."""

from __future__ import annotations

from aiohttp import web

from agent_runtime.errors import InvalidArgument


async def json_body(request: web.Request) -> dict:
    """The request's JSON object; ``{}`` without a body. Anything else is ``InvalidArgument`` (400)."""
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except ValueError as exc:
        raise InvalidArgument(f"request body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidArgument("request body must be a JSON object")
    return data


def query_flag(request: web.Request, name: str) -> bool:
    """A boolean query parameter as Docker's API reads one: ``1``, ``true`` or ``yes``, any case."""
    return request.query.get(name, "").lower() in ("1", "true", "yes")
