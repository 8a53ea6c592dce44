"""An OCI distribution API client (pull and push) over urllib.

- Manifests are requested with the full Accept list (OCI and Docker v2 manifests and indexes);
  an index resolves to the requested platform (linux/amd64 by default). Every manifest, config and
  layer is checked against its digest (and size) before it is used.
- Auth: anonymous, Basic, and Bearer tokens obtained from the realm a ``WWW-Authenticate``
  challenge names. Credentials are never sent on a redirect to another host.
- Transport: https, except plain http for loopback registries (as Docker allows) and for those in
  ``insecure_registries`` (``host:port``, ``host`` or a CIDR such as ``192.0.2.0/24``).
Errors are RegistryError subclasses whose message names the operation, the image and the registry.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import logging
import os
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from http.client import HTTPResponse
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable, Iterable

from . import oci
from .errors import DigestMismatch, ImageError, ManifestUnknown, RegistryAuthError, RegistryError
from .ingest import ProgressEvent, ProgressFn, ingest_manifest, short
from .reference import parse_reference

if TYPE_CHECKING:
    from .store import Image, ImageStore

log = logging.getLogger(__name__)

USER_AGENT = "shoal-runtime/0.1"
DEFAULT_TIMEOUT = 60.0
_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (with or without a port)."""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_insecure(registry: str, insecure_registries: Iterable[str]) -> bool:
    """Whether ``registry`` (host[:port]) may be spoken to over plain HTTP."""
    if is_loopback(registry):
        return True
    host = registry.rsplit(":", 1)[0].strip("[]") if ":" in registry and not registry.endswith("]") else registry.strip("[]")
    for entry in insecure_registries:
        entry = entry.strip().removeprefix("http://").rstrip("/")
        if entry in (registry, host):
            return True
        if "/" in entry:
            try:
                if ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    return False


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """Split ``Bearer realm="...",service="..."`` into ("bearer", {...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
              for m in _CHALLENGE_PARAM.finditer(rest)}
    return scheme.lower(), params


class RegistryClient:
    """Speaks to one registry. Not thread-safe (it caches tokens); make one per operation.

    ``auth`` is (username, password) or None for anonymous access. ``operation`` (e.g.
    ``pull 127.0.0.1:5000/shoal/busybox:latest``) prefixes every error message.
    """

    def __init__(self, registry: str, *, operation: str, api_host: str | None = None,
                 insecure_registries: Iterable[str] = (), auth: tuple[str, str] | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.registry = registry
        self.operation = operation
        self.insecure = is_insecure(registry, insecure_registries)
        self.base = f"{'http' if self.insecure else 'https'}://{api_host or registry}"
        self.auth = auth
        self.timeout = timeout
        self._authorization: dict[str, str] = {}  # scope -> Authorization header value
        handlers: list[urllib.request.BaseHandler] = []
        if self.insecure:
            handlers.append(urllib.request.ProxyHandler({}))
        self._opener = urllib.request.build_opener(*handlers)

    # ---------------------------------------------------------------- transport
    def _fail(self, what: str, cls: type[RegistryError] = RegistryError) -> RegistryError:
        return cls(f"{self.operation}: {what}", registry=self.registry, ref=self.operation)

    def request(self, method: str, url: str, *, scope: str, headers: dict[str, str] | None = None,
                data: bytes | BinaryIO | None = None, ok: tuple[int, ...] = (200,),
                not_found: type[RegistryError] | None = None) -> HTTPResponse:
        """Send one request, answering an auth challenge once. Returns the open response.

        Raises RegistryAuthError on 401/403, ``not_found`` (if given) on 404, RegistryError else.
        """
        if not url.startswith(("http://", "https://")):
            url = self.base + url
        for attempt in range(2):
            req = urllib.request.Request(url, data=data, method=method, headers={"User-Agent": USER_AGENT, **(headers or {})})
            if scope in self._authorization:
                req.add_unredirected_header("Authorization", self._authorization[scope])
            try:
                response = self._opener.open(req, timeout=self.timeout)
            except urllib.error.HTTPError as exc:
                if exc.code == 401 and attempt == 0 and self._answer_challenge(exc, scope):
                    if hasattr(data, "seek"):
                        data.seek(0)  # type: ignore[union-attr]
                    continue
                raise self._http_error(exc, not_found) from None
            except ssl.SSLError as exc:
                raise self._fail(f"TLS to registry {self.registry} failed ({exc.reason or exc}); if it serves "
                                 f"plain HTTP, allow it with --insecure-registry {self.registry}") from exc
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                if isinstance(reason, ssl.SSLError):
                    raise self._fail(f"TLS to registry {self.registry} failed ({reason.reason or reason}); if it "
                                     f"serves plain HTTP, allow it with --insecure-registry {self.registry}") from exc
                raise self._fail(f"cannot reach registry {self.registry}: {reason}") from exc
            if response.status not in ok:
                response.close()
                raise self._fail(f"unexpected HTTP {response.status} from registry {self.registry} for {method} {url}")
            return response
        raise self._fail(f"authentication with registry {self.registry} failed", RegistryAuthError)

    def _http_error(self, exc: urllib.error.HTTPError, not_found: type[RegistryError] | None) -> RegistryError:
        try:
            body = json.loads(exc.read() or b"{}")
            errors = body.get("errors") or []
        except (ValueError, AttributeError, OSError):
            errors = []
        codes = {e.get("code") for e in errors if isinstance(e, dict)}
        detail = "; ".join(str(e.get("message") or e.get("code")) for e in errors if isinstance(e, dict)) or exc.reason
        if exc.code == 404 and not_found is not None:
            what = "manifest unknown" if "MANIFEST_UNKNOWN" in codes or not codes else \
                "repository unknown" if "NAME_UNKNOWN" in codes else "not found"
            return self._fail(f"{what} at registry {self.registry}", not_found)
        if exc.code in (401, 403):
            who = "as " + self.auth[0] if self.auth else "anonymously"
            return self._fail(f"access denied by registry {self.registry} ({who}): {detail}", RegistryAuthError)
        return self._fail(f"registry {self.registry} answered HTTP {exc.code}: {detail}")

    def _answer_challenge(self, exc: urllib.error.HTTPError, scope: str) -> bool:
        header = exc.headers.get("WWW-Authenticate", "")
        exc.close()
        scheme, params = parse_challenge(header)
        if scheme == "basic":
            if not self.auth:
                raise self._fail(f"registry {self.registry} requires a username and password", RegistryAuthError)
            self._authorization[scope] = "Basic " + base64.b64encode(":".join(self.auth).encode()).decode()
            return True
        if scheme == "bearer" and params.get("realm"):
            self._authorization[scope] = "Bearer " + self._fetch_token(params, scope)
            return True
        return False

    def _fetch_token(self, params: dict[str, str], scope: str) -> str:
        query = {"service": params.get("service", "")} if params.get("service") else {}
        query_items = list(query.items()) + [("scope", s) for s in (params.get("scope") or scope).split(" ") if s]
        url = params["realm"] + ("&" if "?" in params["realm"] else "?") + urllib.parse.urlencode(query_items)
        req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        if self.auth:
            req.add_unredirected_header("Authorization", "Basic " + base64.b64encode(":".join(self.auth).encode()).decode())
        try:
            with self._opener.open(req, timeout=self.timeout) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            who = "as " + self.auth[0] if self.auth else "anonymously"
            raise self._fail(f"token server {params['realm']} refused a token for registry {self.registry} "
                             f"({who}): HTTP {exc.code}", RegistryAuthError) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise self._fail(f"cannot get a token for registry {self.registry} from {params['realm']}: {exc}",
                             RegistryAuthError) from exc
        token = body.get("token") or body.get("access_token")
        if not token:
            raise self._fail(f"token server {params['realm']} returned no token", RegistryAuthError)
        return token

    # ---------------------------------------------------------------- distribution API
    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str, str]:
        """Fetch and verify a manifest or index: (bytes, media type, digest).

        By digest, the body must hash to it; by tag, to the Docker-Content-Digest header if sent.
        """
        scope = f"repository:{repository}:pull"
        with self.request("GET", f"/v2/{repository}/manifests/{reference}", scope=scope,
                          headers={"Accept": oci.ACCEPT_MANIFESTS}, not_found=ManifestUnknown) as response:
            body = response.read()
            media_type = (response.headers.get("Content-Type") or "").split(";")[0].strip()
            announced = response.headers.get("Docker-Content-Digest")
        digest = oci.sha256_digest(body)
        expected = reference if reference.startswith("sha256:") else announced
        if expected and expected.startswith("sha256:") and expected != digest:
            raise DigestMismatch(f"{self.operation}: manifest from registry {self.registry} has digest {digest}, "
                                 f"expected {expected}")
        return body, media_type, digest

    def open_blob(self, repository: str, desc: dict) -> HTTPResponse:
        """A stream of blob ``desc``; the caller verifies the content against the descriptor."""
        return self.request("GET", f"/v2/{repository}/blobs/{desc['digest']}", scope=f"repository:{repository}:pull",
                            not_found=RegistryError)

    def has_blob(self, repository: str, digest: str, scope: str) -> bool:
        try:
            with self.request("HEAD", f"/v2/{repository}/blobs/{digest}", scope=scope, not_found=ManifestUnknown):
                return True
        except ManifestUnknown:
            return False

    def upload_blob(self, repository: str, digest: str, size: int, stream: BinaryIO, scope: str) -> None:
        """Monolithic upload: POST an upload session, then PUT the whole blob with its digest."""
        with self.request("POST", f"/v2/{repository}/blobs/uploads/", scope=scope, ok=(202,)) as response:
            location = response.headers.get("Location")
        if not location:
            raise self._fail(f"registry {self.registry} started an upload without a Location")
        location = urllib.parse.urljoin(self.base + "/", location)
        location += ("&" if "?" in location else "?") + urllib.parse.urlencode({"digest": digest})
        with self.request("PUT", location, scope=scope, data=stream, ok=(201, 204),
                          headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)}):
            pass

    def put_manifest(self, repository: str, tag: str, manifest: bytes, media_type: str, scope: str) -> str:
        with self.request("PUT", f"/v2/{repository}/manifests/{tag}", scope=scope, data=manifest, ok=(201, 200),
                          headers={"Content-Type": media_type}) as response:
            announced = response.headers.get("Docker-Content-Digest")
        digest = oci.sha256_digest(manifest)
        if announced and announced != digest:
            raise DigestMismatch(f"{self.operation}: registry {self.registry} stored the manifest as {announced}, "
                                 f"expected {digest}")
        return digest


def pull(store: "ImageStore", ref: str, *, insecure_registries: Iterable[str] = (),
         auth: tuple[str, str] | None = None, progress: ProgressFn | None = None,
         platform: tuple[str, str] = oci.DEFAULT_PLATFORM, mirrors: Iterable[str] = ()) -> "Image":
    """Pull ``ref`` into ``store`` and return it; layers already present are not fetched again.

    ``mirrors`` (dockerd's ``registry-mirrors``: ``https://host[:port]`` or ``http://...``) are
    tried in order for Docker Hub images, then Docker Hub itself, as dockerd does.

    A tag reference tags the pulled image; a digest reference only records the repo digest.
    On failure nothing the pull added stays in the store.
    """
    parsed = parse_reference(ref)
    operation = f"pull {parsed.familiar}"
    client, raw, media_type, digest = _first_manifest(parsed, operation, insecure_registries, auth, mirrors)
    for _ in range(4):
        manifest = oci.parse_manifest(raw, media_type, what=operation)
        if isinstance(manifest, oci.Manifest):
            break
        chosen = oci.choose_platform(manifest, platform, what=operation)
        raw, media_type, digest = client.get_manifest(parsed.repository, chosen["digest"])
    else:
        raise ImageError(f"{operation}: image indexes nested too deeply")
    if parsed.digest and digest != parsed.digest:
        log.debug("%s: index %s resolved to manifest %s", operation, parsed.digest, digest)
    try:
        with store.adding():
            image = ingest_manifest(
                store, raw, lambda desc: client.open_blob(parsed.repository, desc), what=operation,
                tags=[str(parsed)] if parsed.tag else [], repo_digest=f"{parsed.familiar_name}@{parsed.digest or digest}",
                media_type=media_type, progress=progress)
    except BaseException:
        store.collect_garbage()
        raise
    log.info("pulled %s as %s (manifest %s)", parsed, image.id[:19], digest[:19])
    return image




def _first_manifest(parsed, operation: str, insecure_registries: Iterable[str], auth: tuple[str, str] | None,
                    mirrors: Iterable[str]) -> tuple[RegistryClient, bytes, str, str]:
    """The client and manifest of the first source that has it: a mirror (Docker Hub images
    only; a mirror failing is logged and skipped), else the image's own registry."""
    if parsed.registry == "docker.io":
        for mirror in mirrors:
            scheme, _, host = mirror.rstrip("/").rpartition("://")
            allowed = [*insecure_registries, host] if scheme == "http" else list(insecure_registries)
            client = RegistryClient(host, operation=f"{operation} (mirror {host})", api_host=host,
                                    insecure_registries=allowed, auth=None)
            try:
                return (client, *client.get_manifest(parsed.repository, parsed.reference))
            except RegistryError as exc:
                log.info("registry mirror %s cannot serve %s, trying the next source: %s", host, parsed, exc)
    client = RegistryClient(parsed.registry, operation=operation, api_host=parsed.api_host,
                            insecure_registries=insecure_registries, auth=auth)
    return (client, *client.get_manifest(parsed.repository, parsed.reference))


def push_manifest(client: RegistryClient, repository: str, tag: str, manifest: bytes, media_type: str,
                  open_blob: Callable[[dict], BinaryIO], progress: ProgressFn | None = None) -> str:
    """Upload the blobs ``manifest`` references that the registry lacks, then the manifest as ``tag``.

    Returns the manifest digest. ``open_blob(descriptor)`` opens a local copy of a blob.
    """
    parsed = oci.parse_manifest(manifest, media_type, what=client.operation)
    if not isinstance(parsed, oci.Manifest):
        raise ImageError(f"{client.operation}: pushing image indexes is not supported")
    scope = f"repository:{repository}:pull,push"

    def report(desc: dict, status: str, current: int = 0) -> None:
        if progress is not None:
            progress(ProgressEvent(short(desc["digest"]), status, current, int(desc["size"])))

    for desc in parsed.layers:
        report(desc, "Preparing")
    for desc in [*parsed.layers, parsed.config]:
        if client.has_blob(repository, desc["digest"], scope):
            if desc is not parsed.config:
                report(desc, "Layer already exists")
            continue
        if desc is not parsed.config:
            report(desc, "Pushing", 0)
        with open_blob(desc) as stream:
            client.upload_blob(repository, desc["digest"], int(desc["size"]), stream, scope)
        if desc is not parsed.config:
            report(desc, "Pushed", int(desc["size"]))
    return client.put_manifest(repository, tag, manifest, parsed.media_type, scope)


def push(store: "ImageStore", ref: str, *, insecure_registries: Iterable[str] = (),
         auth: tuple[str, str] | None = None, progress: ProgressFn | None = None) -> str:
    """Push the local image ``ref`` to the registry in its name; returns the manifest digest."""
    parsed = parse_reference(ref)
    operation = f"push {parsed.familiar}"
    if parsed.digest or not parsed.tag:
        raise ImageError(f"{operation}: push needs a tag reference (name:tag)")
    image = store.resolve(ref)
    manifest = store.blobs.read(image.manifest_digest)
    client = RegistryClient(parsed.registry, operation=operation, api_host=parsed.api_host,
                            insecure_registries=insecure_registries, auth=auth)
    digest = push_manifest(client, parsed.repository, parsed.tag, manifest, image.manifest_media_type,
                           lambda desc: store.blobs.open(desc["digest"]), progress)
    with store.adding():
        store.commit(manifest, store.blobs.read(image.id), store.layer_blobs(image),
                     repo_digest=f"{parsed.familiar_name}@{digest}", manifest_media_type=image.manifest_media_type)
    log.info("pushed %s (manifest %s)", parsed, digest[:19])
    return digest


def push_layout(layout_dir: Path | str, ref: str, *, insecure_registries: Iterable[str] = (),
                auth: tuple[str, str] | None = None, progress: ProgressFn | None = None,
                platform: tuple[str, str] = oci.DEFAULT_PLATFORM) -> str:
    """Push the single image of an OCI layout (or the entry for ``ref``'s tag) to ``ref``.

    Blobs are verified against their digests as they are read. Returns the manifest digest.
    """
    root = Path(layout_dir)
    parsed = parse_reference(ref)
    operation = f"push {parsed.familiar}"
    try:
        index = json.loads((root / "index.json").read_text())
    except (OSError, ValueError) as exc:
        raise ImageError(f"{operation}: {root} is not an OCI layout: {exc}") from exc
    entries = index.get("manifests") or []
    named = [m for m in entries if (m.get("annotations") or {}).get(oci.REF_NAME_ANNOTATION) == parsed.tag]
    candidates = named or entries
    if len(candidates) != 1:
        raise ImageError(f"{operation}: layout {root} holds {len(entries)} images and none is tagged {parsed.tag}")

    def blob_path(digest: str) -> Path:
        return root / "blobs" / "sha256" / digest.split(":", 1)[1]

    def read_verified(desc: dict) -> bytes:
        data = blob_path(desc["digest"]).read_bytes()
        if oci.sha256_digest(data) != desc["digest"]:
            raise DigestMismatch(f"{operation}: layout blob {desc['digest']} is corrupt")
        return data

    desc = candidates[0]
    manifest = read_verified(desc)
    parsed_manifest = oci.parse_manifest(manifest, desc.get("mediaType"), what=operation)
    if not isinstance(parsed_manifest, oci.Manifest):
        desc = oci.choose_platform(parsed_manifest, platform, what=operation)
        manifest = read_verified(desc)

    def open_blob(blob: dict) -> BinaryIO:
        hasher = hashlib.sha256()
        with open(blob_path(blob["digest"]), "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                hasher.update(chunk)
        if "sha256:" + hasher.hexdigest() != blob["digest"]:
            raise DigestMismatch(f"{operation}: layout blob {blob['digest']} is corrupt")
        return open(blob_path(blob["digest"]), "rb")

    client = RegistryClient(parsed.registry, operation=operation, api_host=parsed.api_host,
                            insecure_registries=insecure_registries, auth=auth)
    return push_manifest(client, parsed.repository, parsed.tag or "latest", manifest,
                         desc.get("mediaType") or oci.OCI_MANIFEST, open_blob, progress)


def docker_config_auth(registry: str, config_path: str | os.PathLike | None = None) -> tuple[str, str] | None:
    """Credentials for ``registry`` from a Docker ``config.json`` (``auths.<registry>.auth``), if any."""
    path = Path(config_path) if config_path else Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "config.json"
    try:
        auths = json.loads(path.read_text()).get("auths") or {}
    except (OSError, ValueError):
        return None
    for key in (registry, f"https://{registry}", f"http://{registry}"):
        entry = auths.get(key) or {}
        if entry.get("auth"):
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            return user, password
        if entry.get("username"):
            return entry["username"], entry.get("password", "")
    return None
