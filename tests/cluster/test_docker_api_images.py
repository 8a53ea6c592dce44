"""The stock `docker` CLI's image commands against a lab node's Docker API socket (shoal/dockerapi/
images.py, backed by runtimed's image endpoints): pull with the daemon's --insecure-registry, images,
tag, push, image load, save, rmi, and rmi refused while a container uses the image; checked with `shoal`."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.component.images_builders import make_tar, write_docker_archive

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(managers=1, workers=0)


@pytest.fixture(scope="module")
def docker(lab, tmp_path_factory):
    if shutil.which("docker") is None:
        pytest.skip("the docker CLI is not installed (make install gets it)")
    sock = {h["name"]: h for h in lab.status()["hosts"]}["manager1"]["docker_socket"]
    env = {"DOCKER_HOST": f"unix://{sock}", "DOCKER_CONFIG": str(tmp_path_factory.mktemp("docker-config")),
           "PATH": "/usr/local/bin:/usr/bin:/bin"}

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result
    return run


def shoal_images(lab) -> list[dict]:
    out = lab.shoal("manager1", "images", "--format", "json").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_docker_image_commands(lab, docker, image, tmp_path):
    pulled = docker("pull", image)
    assert "Status: Downloaded newer image for" in pulled.stdout or "Image is up to date" in pulled.stdout
    assert pulled.stdout.strip().splitlines()[-1] == image
    table = docker("images").stdout.splitlines()
    assert table[0].split()[:2] == ["REPOSITORY", "TAG"]
    assert any(line.split()[:2] == [image.rsplit(":", 1)[0], "latest"] for line in table[1:])
    assert json.loads(docker("image", "inspect", image).stdout)[0]["RepoTags"] == [image]

    copy = f"{lab.registry}/dockerapi/copy:v1"
    docker("tag", image, copy)
    pushed = docker("push", copy)
    assert "v1: digest: sha256:" in pushed.stdout
    assert docker("rmi", copy).stdout.splitlines()[0] == f"Untagged: {copy}"

    archive = tmp_path / "saved.tar"
    write_docker_archive(archive, [make_tar([("hello", "file", b"hi")])], ["example/loaded:v1"])
    assert "Loaded image: example/loaded:v1" in docker("image", "load", "-i", str(archive)).stdout
    assert {"example/loaded"} <= {i["Repository"] for i in shoal_images(lab)}
    missing = docker("image", "inspect", "example/none:1", check=False)
    assert missing.returncode == 1 and "No such image" in missing.stderr
    # docker save (GET /images/get) and load it back after rmi: the same image
    loaded_id = json.loads(docker("image", "inspect", "example/loaded:v1").stdout)[0]["Id"]
    again = tmp_path / "again.tar"
    docker("save", "-o", str(again), "example/loaded:v1")
    docker("rmi", "example/loaded:v1")
    assert "Loaded image: example/loaded:v1" in docker("load", "-i", str(again)).stdout
    assert json.loads(docker("image", "inspect", "example/loaded:v1").stdout)[0]["Id"] == loaded_id
    unsaved = docker("save", "-o", str(tmp_path / "none.tar"), "example/none:1", check=False)
    assert unsaved.returncode == 1 and "No such image: example/none:1" in unsaved.stderr, unsaved

    lab.shoal("manager1", "run", "-d", "--name", "user", image, "sleep", "300")
    try:
        refused = docker("rmi", image, check=False)
        assert refused.returncode == 1 and "user" in refused.stderr and "running" in refused.stderr
        assert image.rsplit(":", 1)[0] in {i["Repository"] for i in shoal_images(lab)}
    finally:
        lab.shoal("manager1", "container", "rm", "-f", "user")
    assert "Untagged: example/loaded:v1" in docker("rmi", "example/loaded:v1").stdout
