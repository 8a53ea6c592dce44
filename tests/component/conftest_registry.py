"""Fixtures that run Debian's ``docker-registry`` (distribution 2.8) on loopback.

Import them into a test module (``from conftest_registry import plain_registry, ...``). Each
registry listens on 127.0.0.1 on a free port with its storage in a temp dir and is stopped by PID
at teardown. Variants: anonymous, htpasswd Basic auth (bcrypt made with Python's ``crypt``, which
uses libxcrypt; no apache2-utils needed), and Bearer tokens from a small in-test token server
(ES256 JWTs with an x5c header, signed with ``cryptography``).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
import warnings
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

USER, PASSWORD = "shoal", "s3cret-pass"
SERVICE, ISSUER = "shoal-test-registry", "shoal-test-issuer"


@dataclass
class Registry:
    host: str  # 127.0.0.1:PORT
    storage: Path
    process: subprocess.Popen
    token_requests: list[str] = field(default_factory=list)

    def blob_file(self, digest: str) -> Path:
        hexpart = digest.split(":", 1)[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hexpart[:2] / hexpart / "data"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(tmp: Path, auth_yaml: str = "") -> Registry:
    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry (Debian package) is not installed")
    port = _free_port()
    storage = tmp / "storage"
    storage.mkdir()
    config = tmp / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n" + auth_yaml)
    log = open(tmp / "registry.log", "wb")
    process = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    log.close()
    registry = Registry(f"127.0.0.1:{port}", storage, process)
    for _ in range(200):
        if process.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {(tmp / 'registry.log').read_text()}")
        try:
            urllib.request.urlopen(f"http://{registry.host}/v2/", timeout=1).close()
            return registry
        except urllib.error.HTTPError:
            return registry  # 401: up, and wants auth
        except OSError:
            time.sleep(0.05)
    _stop(registry)
    raise RuntimeError("docker-registry did not start listening")


def _stop(registry: Registry) -> None:
    registry.process.terminate()
    try:
        registry.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        registry.process.kill()
        registry.process.wait()


@pytest.fixture(scope="module")
def plain_registry(tmp_path_factory):
    registry = _start(tmp_path_factory.mktemp("registry"))
    yield registry
    _stop(registry)


def bcrypt_hash(password: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("registry-basic")
    (tmp / "htpasswd").write_text(f"{USER}:{bcrypt_hash(PASSWORD)}\n")
    registry = _start(tmp, f"auth:\n  htpasswd:\n    realm: shoal-test\n    path: {tmp / 'htpasswd'}\n")
    yield registry
    _stop(registry)


class _TokenServer:
    """Issues registry tokens to USER/PASSWORD (and anonymous pull tokens to nobody)."""

    def __init__(self, tmp: Path) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shoal test token signer")])
        now = dt.datetime.now(dt.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
                .not_valid_after(now + dt.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(self.key, hashes.SHA256()))
        self.cert_der = cert.public_bytes(serialization.Encoding.DER)
        self.bundle = tmp / "token-ca.pem"
        self.bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append(self.path)
                query = parse_qs(urlparse(self.path).query)
                header = self.headers.get("Authorization", "")
                authed = header == "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
                if header and not authed:
                    self.send_response(401)
                    self.end_headers()
                    return
                access = []
                for scope in query.get("scope", []):
                    kind, name, actions = scope.split(":")
                    granted = [a for a in actions.split(",") if authed or a == "pull"]
                    access.append({"type": kind, "name": name, "actions": granted})
                body = json.dumps({"token": server.token(access, query.get("service", [""])[0]),
                                   "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def token(self, access: list[dict], service: str) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        now = int(time.time())
        header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(self.cert_der).decode()]}
        claims = {"iss": ISSUER, "sub": USER, "aud": service, "exp": now + 300, "nbf": now - 10, "iat": now,
                  "jti": uuid.uuid4().hex, "access": access}
        signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("registry-token")
    tokens = _TokenServer(tmp)
    try:
        registry = _start(tmp, f"auth:\n  token:\n    realm: {tokens.realm}\n    service: {SERVICE}\n"
                               f"    issuer: {ISSUER}\n    rootcertbundle: {tokens.bundle}\n")
        registry.token_requests = tokens.requests
        yield registry
        _stop(registry)
    finally:
        tokens.close()
