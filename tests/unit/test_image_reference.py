"""Pure parts of agent_runtime.images: references, --change instructions, auth challenges, indexes."""

from __future__ import annotations

import pytest

from agent_runtime.images import ImageError, InvalidReference, parse_reference
from agent_runtime.images.oci import apply_changes, choose_platform
from agent_runtime.images.registry import is_insecure, parse_challenge


@pytest.mark.parametrize("ref, canonical, familiar", [
    ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("shoal/busybox:latest", "docker.io/shoal/busybox:latest", "shoal/busybox:latest"),
    ("127.0.0.1:5000/shoal/busybox:latest", "127.0.0.1:5000/shoal/busybox:latest", "127.0.0.1:5000/shoal/busybox:latest"),
    ("192.0.2.254:5000/shoal/nope", "192.0.2.254:5000/shoal/nope:latest", "192.0.2.254:5000/shoal/nope:latest"),
    ("localhost/app:v1.2-rc", "localhost/app:v1.2-rc", "localhost/app:v1.2-rc"),
    ("index.docker.io/library/alpine:3", "docker.io/library/alpine:3", "alpine:3"),
    ("app@sha256:" + "a" * 64, "docker.io/library/app@sha256:" + "a" * 64, "app@sha256:" + "a" * 64),
])
def test_references_normalise_like_docker(ref, canonical, familiar):
    parsed = parse_reference(ref)
    assert (str(parsed), parsed.familiar) == (canonical, familiar)


@pytest.mark.parametrize("ref", ["", "Busybox", "a:b:c", "app:bad tag", "app@sha256:short", "-app", " app"])
def test_bad_references_are_refused_with_the_reference_named(ref):
    with pytest.raises(InvalidReference) as err:
        parse_reference(ref)
    assert repr(ref) in str(err.value)


def test_changes_apply_like_docker_import():
    config = apply_changes({"Env": ["A=1"]}, [
        "CMD echo hi", 'ENTRYPOINT ["/init"]', "ENV A=2 B=3", "ENV C four", "EXPOSE 80 53/udp",
        "LABEL team=shoal", "STOPSIGNAL SIGQUIT", "USER nobody", "WORKDIR /srv", "VOLUME /data"])
    assert config == {
        "Cmd": ["/bin/sh", "-c", "echo hi"], "Entrypoint": ["/init"], "Env": ["A=2", "B=3", "C=four"],
        "ExposedPorts": {"80/tcp": {}, "53/udp": {}}, "Labels": {"team": "shoal"}, "StopSignal": "SIGQUIT",
        "User": "nobody", "WorkingDir": "/srv", "Volumes": {"/data": {}}}
    with pytest.raises(ImageError, match="RUN"):
        apply_changes({}, ["RUN make"])


def test_challenge_parsing():
    assert parse_challenge('Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull"') == (
        "bearer", {"realm": "https://auth.example/token", "service": "reg", "scope": "repository:a/b:pull"})
    assert parse_challenge('Basic realm="x"') == ("basic", {"realm": "x"})


def test_insecure_registry_matching():
    assert is_insecure("127.0.0.1:5000", []) and is_insecure("[::1]:5000", []) and is_insecure("localhost", [])
    assert not is_insecure("192.0.2.1:5000", [])
    assert is_insecure("192.0.2.1:5000", ["192.0.2.1:5000"]) and is_insecure("192.0.2.1:5000", ["192.0.2.1"])
    assert is_insecure("192.0.2.1:5000", ["192.0.2.0/24"]) and not is_insecure("198.18.0.1:5000", ["192.0.2.0/24"])


def test_index_picks_linux_amd64_without_variant_first():
    manifests = [
        {"digest": "arm", "platform": {"os": "linux", "architecture": "arm64"}},
        {"digest": "v3", "platform": {"os": "linux", "architecture": "amd64", "variant": "v3"}},
        {"digest": "plain", "platform": {"os": "linux", "architecture": "amd64"}},
    ]
    assert choose_platform(manifests, what="pull x")["digest"] == "plain"
    with pytest.raises(ImageError, match="no manifest for linux/s390x .*linux/amd64, linux/arm64"):
        choose_platform(manifests, ("linux", "s390x"), what="pull x")
