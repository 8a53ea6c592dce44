# Shoal: the two commands a new user needs are `make demo` and `make test`.
# Everything they need is installed by `make install` (idempotent; Debian 12, as root).

SHELL := /bin/bash
PYTHON ?= /usr/bin/python3
VENV := .venv
PY := $(VENV)/bin/python
DEB_PACKAGES := python3-venv python3-dev iproute2 nftables busybox-static docker-registry skopeo \
                runc crun libseccomp2 iputils-ping curl procps kmod iperf3 faketime
PROTOS := proto/objects.proto proto/store.proto proto/control.proto proto/cluster.proto
LAB ?= demo
# Checkers the tests run on deploy/ (systemd-analyze verify, vagrant validate), Prometheus, and the browser the
# web page's test drives (chromium, headless); no recommends.
TOOL_DEB_PACKAGES := systemd vagrant vagrant-libvirt prometheus chromium
# What a server needs (deploy/provision.sh: `make install-runtime`): no test tools, no registry.
RUNTIME_DEB_PACKAGES := python3-venv iproute2 nftables busybox-static procps kmod libseccomp2
# What the VM test needs on the host (`make vagrant-test`), besides the above.
VAGRANT_DEB_PACKAGES := qemu-system-x86 qemu-utils mmdebstrap libvirt-daemon-system libvirt-clients \
                        vagrant vagrant-libvirt rsync docker-registry openssh-client

.PHONY: install install-runtime vagrant-test deb venv image demo demo-down test test-unit test-cluster bench proto proto-check lint clean constraints

install: deb venv image

deb:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(APT_FLAGS) $$missing >/dev/null || \
	  { DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(APT_FLAGS) $$missing >/dev/null; }; \
	fi
	@if [ -z "$(APT_FLAGS)$(NO_TOOLS)" ]; then $(MAKE) --no-print-directory deb DEB_PACKAGES="$(TOOL_DEB_PACKAGES)" APT_FLAGS=--no-install-recommends; fi

# Exact versions from constraints.txt (ranges in pyproject.toml); a version that does not match fails here.
# The checkout goes on sys.path through a plain .pth (editable_mode=compat): setuptools' default
# editable finder imports pathlib, urllib.parse and re in every Python process of the venv, about
# half of a bare interpreter's start-up (19 of 38 ms of CPU under load), paid by every shoal command.
$(VENV)/.installed: pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@set -o pipefail; $(PY) -m pip install -q --disable-pip-version-check -c constraints.txt \
	  --config-settings editable_mode=compat -e '.[dev]' 2>&1 \
	  | { grep -v -e '^WARNING: Location' -e DEPRECATION || true; }
	@$(PY) -c 'import shoal, grpc, pysyncobj, pyroute2' && touch $@

# Re-pin constraints.txt from a clean venv after changing pyproject.toml's dependencies.
constraints:
	rm -rf build/constraints-venv && $(PYTHON) -m venv build/constraints-venv
	build/constraints-venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
	{ sed -n '1,2p' constraints.txt; build/constraints-venv/bin/pip freeze --all --exclude-editable | grep -v '^pip=='; } > constraints.txt.new
	mv constraints.txt.new constraints.txt; rm -rf build/constraints-venv

venv: $(VENV)/.installed

image: venv
	@$(PY) deploy/images/build_busybox.py build/busybox-oci >/dev/null

demo: install
	$(PY) -m shoal.lab up --name $(LAB) --managers 3 --workers 2
	@deploy/demo.sh $(LAB)

demo-down:
	$(PY) -m shoal.lab down --name $(LAB)

test: install proto-check lint
	$(PY) -m pytest -q -p no:cacheprovider --timeout 900 tests

test-unit: venv
	$(PY) -m pytest -q -p no:cacheprovider --timeout 300 tests/unit tests/property

bench: install
	@for b in bench/*.py; do case $$b in bench/raft_local.py) continue;; esac; echo "== $$b"; $(PY) $$b || exit 1; done

proto: venv
	$(PY) -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. $(PROTOS)

# CI fails if regenerating the protobuf code changes what is committed.
proto-check: venv
	@tmp=$$(mktemp -d); \
	$(PY) -m grpc_tools.protoc -I . --python_out=$$tmp --pyi_out=$$tmp --grpc_python_out=$$tmp $(PROTOS) && \
	for f in $$tmp/proto/*.py $$tmp/proto/*.pyi; do cmp -s $$f proto/$$(basename $$f) || { echo "proto/$$(basename $$f) is stale: run make proto"; rm -rf $$tmp; exit 1; }; done; \
	rm -rf $$tmp

# Import contracts (pyproject [tool.importlinter]) and types (pyproject [tool.mypy]).
lint: venv
	@$(VENV)/bin/lint-imports --no-cache >/dev/null || $(VENV)/bin/lint-imports --no-cache
	@$(VENV)/bin/mypy >/dev/null || $(VENV)/bin/mypy
	@$(VENV)/bin/ruff check --quiet .

clean:
	rm -rf $(VENV) build

# A server's install (deploy/provision.sh): the runtime's Debian packages and the package itself,
# without the dev extra. Idempotent.
install-runtime:
	@$(MAKE) --no-print-directory deb DEB_PACKAGES="$(RUNTIME_DEB_PACKAGES)" NO_TOOLS=1
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt $(PIP_OPTS) . 2>&1 | grep -v -e '^WARNING: Location' -e DEPRECATION || true
	@$(PY) -c 'import shoal, grpc, pysyncobj, pyroute2'

# Real VMs: 3 managers + 2 workers with deploy/Vagrantfile on libvirt, provisioned by
# deploy/provision.sh, checked from this host (deploy/vagrant/test.py; not part of `make test`).
# VAGRANT_TEST_ARGS=--keep leaves the VMs running.
vagrant-test: install
	@$(MAKE) --no-print-directory deb DEB_PACKAGES="$(VAGRANT_DEB_PACKAGES)" NO_TOOLS=1
	$(PY) deploy/vagrant/test.py $(VAGRANT_TEST_ARGS)
