"""`docker images|pull|push|rmi|tag|image load|image inspect` on shoald's Docker API, backed by the
node's shoal-runtimed image endpoints (agent_runtime/image_api.py): validation and translation
only, so the daemon's registry settings apply as they do to `shoal pull` and to services.

    GET    /images/json                  Docker's ImageSummary list
    GET    /images/{name}/json           image inspect
    POST   /images/create?fromImage=&tag=&platform=   pull (X-Registry-Auth passed on), progress streamed
    POST   /images/{name}/push?tag=      push (X-Registry-Auth passed on), progress streamed
    POST   /images/{name}/tag?repo=&tag= 201
    DELETE /images/{name}?force=         Docker's Untagged/Deleted list; 409 while a container uses it
    POST   /images/load?quiet=           a docker-save / OCI archive as the body; {"stream": "Loaded image: ..."}
    GET    /images/get?names=, /images/{name}/get   docker save: the archive (OCI layout + manifest.json)
"""
from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from agent_runtime.errors import Conflict, InvalidArgument, NotFound, ShoalRuntimeError
from shoal.dockerapi.convert import BadRequest, Unsupported

if TYPE_CHECKING:
    from shoal.dockerapi.server import DockerAPI


def _created_seconds(created: str) -> int:
    """Unix seconds of an RFC 3339 time (``2026-12-03T12:00:00.123456789Z``); 0 if unreadable."""
    try:
        return int(dt.datetime.fromisoformat(created[:19]).replace(tzinfo=dt.timezone.utc).timestamp())
    except ValueError:
        return 0


def image_summary(image: dict) -> dict:
    """Docker's ImageSummary for runtimed's inspect object."""
    return {"Id": image["Id"], "ParentId": "", "RepoTags": image.get("RepoTags") or [],
            "RepoDigests": image.get("RepoDigests") or [], "Created": _created_seconds(image.get("Created", "")),
            "Size": image.get("Size", 0), "SharedSize": -1, "VirtualSize": image.get("Size", 0),
            "Labels": (image.get("Config") or {}).get("Labels") or {}, "Containers": -1}


def image_inspect(image: dict) -> dict:
    return {**image, "Parent": "", "Comment": "", "DockerVersion": "", "Author": "", "Variant": "",
            "RepoTags": image.get("RepoTags") or [], "RepoDigests": image.get("RepoDigests") or []}


class ImageRoutes:
    def __init__(self, api: "DockerAPI") -> None:
        self.api = api

    def routes(self) -> list[tuple[str, str, Any]]:
        # /images/json, /create and /load before the {name:.+} routes, which would match them
        return [("GET", "/images/json", self.list), ("POST", "/images/create", self.pull),
                ("POST", "/images/load", self.load), ("GET", "/images/get", self.save),
                ("GET", "/images/{name:.+}/get", self.save),
                ("GET", "/images/{name:.+}/json", self.inspect), ("POST", "/images/{name:.+}/push", self.push),
                ("POST", "/images/{name:.+}/tag", self.tag), ("DELETE", "/images/{name:.+}", self.remove)]

    def _runtime(self):
        return self.api.runtime()

    async def _call(self, fn, *args, **kwargs):
        from shoal.dockerapi.server import ApiError
        try:
            return await fn(*args, **kwargs)
        except NotFound as err:
            raise ApiError(404, str(err)) from None
        except Conflict as err:
            raise ApiError(409, str(err)) from None
        except InvalidArgument as err:
            raise BadRequest(str(err)) from None
        except ShoalRuntimeError as err:
            raise ApiError(500, str(err)) from None

    async def list(self, request: web.Request) -> web.Response:
        from shoal.dockerapi.server import _json
        if request.query.get("filters") not in (None, "", "{}"):
            raise Unsupported("GET /images/json: filters are not supported by Shoal's Docker API")
        images = await self._call(self._runtime().images)
        return _json([image_summary(i) for i in images])

    async def inspect(self, request: web.Request) -> web.Response:
        from shoal.dockerapi.server import ApiError, _json
        if self.api.d.runtime is None:   # `docker inspect NAME` probes images first: 404 lets it go on
            raise ApiError(404, f"No such image: {request.match_info['name']}")
        return _json(image_inspect(await self._call(self._runtime().image_inspect, request.match_info["name"])))

    async def tag(self, request: web.Request) -> web.Response:
        repo, tag = request.query.get("repo", ""), request.query.get("tag", "")
        if not repo:
            raise BadRequest("repository name must have at least one component")
        await self._call(self._runtime().image_tag, request.match_info["name"], f"{repo}:{tag}" if tag else repo)
        return web.Response(status=201)

    async def remove(self, request: web.Request) -> web.Response:
        from shoal.dockerapi.server import _json, convert
        force = convert.parse_bool(request.query.get("force"))
        return _json(await self._call(self._runtime().image_remove, request.match_info["name"], force))

    async def pull(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("fromSrc"):
            raise Unsupported("POST /images/create?fromSrc (docker import) is not supported by Shoal's Docker API")
        name, tag = request.query.get("fromImage", ""), request.query.get("tag", "")
        if not name:
            raise BadRequest("fromImage: give the image to pull")
        ref = name if not tag else (f"{name}@{tag}" if tag.startswith("sha256:") else f"{name}:{tag}")
        stream = self._runtime().image_pull_stream(ref, request.headers.get("X-Registry-Auth"),
                                                   request.query.get("platform") or None)
        return await self._relay(request, stream)

    async def push(self, request: web.Request) -> web.StreamResponse:
        name, tag = request.match_info["name"], request.query.get("tag", "")
        ref = f"{name}:{tag}" if tag else name
        return await self._relay(request, self._runtime().image_push_stream(ref, request.headers.get("X-Registry-Auth")))

    async def _relay(self, request: web.Request, messages) -> web.StreamResponse:
        """runtimed's stream is already Docker's JSON messages: pass them on (``aux`` lines of pull
        carry runtimed's image object, which the docker CLI ignores; dropped)."""
        from shoal.dockerapi.server import _headers
        iterator = messages.__aiter__()
        try:
            first = await self._call(iterator.__anext__)   # errors before the stream: a status code
        except StopAsyncIteration:
            first = None
        response = web.StreamResponse(status=200)
        response.content_type = "application/json"
        _headers(response)
        await response.prepare(request)
        try:
            if first is not None:
                await response.write(json.dumps(first).encode() + b"\r\n")
            async for message in iterator:
                if "aux" in message and "Tag" not in message["aux"]:
                    continue
                await response.write(json.dumps(message).encode() + b"\r\n")
        except ShoalRuntimeError as err:
            await response.write(json.dumps({"error": str(err), "errorDetail": {"message": str(err)}}).encode())
        await response.write_eof()
        return response

    async def save(self, request: web.Request) -> web.StreamResponse:
        """docker save: runtimed's archive, relayed; an unknown image is a 404 before any byte."""
        names = [request.match_info["name"]] if "name" in request.match_info else request.query.getall("names", [])
        if not names:
            raise BadRequest("names: give at least one image")
        if request.query.get("platform"):
            raise Unsupported("GET /images/get?platform: Shoal's store holds one platform per image")
        chunks = self._runtime().image_save_stream(names)
        first = await self._call(chunks.__anext__)
        response = web.StreamResponse(headers={"Content-Type": "application/x-tar"})
        await response.prepare(request)
        await response.write(first)
        async for chunk in chunks:
            await response.write(chunk)
        await response.write_eof()
        return response

    async def load(self, request: web.Request) -> web.Response:
        async def chunks():
            while chunk := await request.content.read(1 << 20):
                yield chunk
        images = await self._call(self._runtime().image_load_stream, chunks())
        lines = [f"Loaded image: {t}\n" for i in images for t in i.get("RepoTags") or []] or \
                [f"Loaded image ID: {i['Id']}\n" for i in images]
        # quiet only silences progress in Docker; the "Loaded image" lines are always sent
        return web.Response(body="".join(json.dumps({"stream": line}) + "\r\n" for line in lines).encode(),
                            content_type="application/json")
