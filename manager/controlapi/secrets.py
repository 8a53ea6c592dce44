"""The ControlAPI's secrets and configs: create, read, list and remove them (Docker's semantics).

Secrets and configs are the same thing with two differences: a secret's data is sealed before it
is proposed to the store (``manager.secretbox``: the Raft journal and dumps on disk never hold it
in plaintext) and is never returned by any call; a config's data is stored as it is and returned
by GetConfig and ListConfigs, as Docker does. Neither can be updated in place (Docker allows
changing labels only; not offered here): make a new one and point the service at it.

Rules, as SwarmKit's: a name is 1-64 characters, letters and digits with ``-``, ``_`` or ``.``
inside (``^[a-zA-Z0-9]+(?:[a-zA-Z0-9-_.]*[a-zA-Z0-9])?$``); names are unique per kind; data is at
least one byte and under 500 KiB (secrets) or 1000 KiB (configs). Removal is refused while a
service's spec refers to the object; the message names the services. Services refer to secrets
and configs by name; ``services.py`` resolves the names to IDs when a service is written.

Methods take the request message and return the response message, or raise ``ControlError``
(api.py) naming the object and what is wrong. They run on the manager's asyncio loop.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from manager.controlapi.api import ControlError, name_conflict_message, write
from common.limits import MAX_CONFIG_BYTES, MAX_SECRET_BYTES
from manager.controlapi.limits import LimitError, check_labels, quoted
from manager.controlapi.services import filter_options, labels_match, resolve
from manager.ids import new_id
from manager.secretbox import SecretBox, SecretBoxError
from manager.state import Kind, copy_of
from proto import control_pb2, objects_pb2

log = logging.getLogger(__name__)

MAX_NAME_LENGTH = 64
_NAME_RE = re.compile(r"^[a-zA-Z0-9]+(?:[a-zA-Z0-9-_.]*[a-zA-Z0-9])?$")
_FILTERS = ("id", "name", "label")


@dataclass(frozen=True)
class _Flavour:
    kind: Kind
    word: str              # "secret" / "config"
    max_bytes: int

    def refs(self, service: objects_pb2.Service):
        container = service.spec.task.container
        return container.secrets if self.kind is Kind.SECRET else container.configs

    def ref_id(self, ref) -> str:
        return ref.secret_id if self.kind is Kind.SECRET else ref.config_id


SECRETS = _Flavour(Kind.SECRET, "secret", MAX_SECRET_BYTES)
CONFIGS = _Flavour(Kind.CONFIG, "config", MAX_CONFIG_BYTES)


def check_spec(spec, flavour: _Flavour) -> None:
    """ControlError invalid naming the first problem of a SecretSpec or ConfigSpec. Pure."""
    name = spec.annotations.name
    word = flavour.word
    if not name:
        raise ControlError("invalid", f"create {word}: a name is required")
    if len(name) > MAX_NAME_LENGTH or not _NAME_RE.match(name):
        raise ControlError("invalid", f"create {word} {quoted(name)}: invalid name: it must be at most "
                                      f"{MAX_NAME_LENGTH} characters, letters and digits with '-', '_' or "
                                      "'.' inside, starting and ending with a letter or digit")
    try:
        check_labels(spec.annotations.labels)
    except LimitError as err:
        raise ControlError("invalid", f"create {word} {name}: {err}") from None
    size = len(spec.data)
    if not 0 < size < flavour.max_bytes:
        raise ControlError("invalid", f"create {word} {name}: {word} data must be larger than 0 and less "
                                      f"than {flavour.max_bytes // 1024} KiB (it is {size} bytes)")
    templating = getattr(spec, "templating", None)
    if templating is not None and templating.name not in ("", "golang"):
        raise ControlError("invalid", f"create {word} {name}: unsupported template driver {quoted(templating.name)} "
                                      "(golang is the one there is)")
    if templating is not None and templating.name:
        from common.gotemplate import PAYLOAD_FUNCS, Template, TemplateError
        try:
            Template(spec.data.decode("utf-8"), "expansion", PAYLOAD_FUNCS)
        except (TemplateError, UnicodeDecodeError) as err:
            raise ControlError("invalid", f"create {word} {name}: the template does not parse: {err}") from None


def matches(obj, filters: dict[str, str]) -> bool:
    """Docker's `secret ls` / `config ls` filters: id (prefix), name (prefix), label (key or
    key=value). A value may list alternatives separated by commas."""
    for key, value in filters.items():
        options = filter_options(value)
        if key == "id" and not any(obj.id.startswith(v) for v in options):
            return False
        if key == "name" and not any(obj.spec.annotations.name.startswith(v) for v in options):
            return False
        if key == "label" and not labels_match(obj.spec.annotations.labels, options):
            return False
    return True


def users(view, obj, flavour: _Flavour) -> list[str]:
    """Names of the services whose spec refers to ``obj``, sorted. Pure over the view."""
    return sorted(s.spec.annotations.name for s in view.services()
                  if any(flavour.ref_id(ref) == obj.id for ref in flavour.refs(s)))


def public_secret(secret: objects_pb2.Secret) -> objects_pb2.Secret:
    """A copy of ``secret`` without its data (sealed or not): what every call returns."""
    out = copy_of(secret)
    out.spec.ClearField("data")
    return out


class SecretControl:
    """Secrets and configs of the ControlAPI. All methods run on the manager's asyncio loop.

    ``box`` seals secret data with the cluster's secrets key (see manager.secretbox).
    """

    def __init__(self, store, box: SecretBox):
        self._store = store
        self._box = box

    # -- helpers -------------------------------------------------------------------------------
    def _find(self, ref: str, flavour: _Flavour):
        if not ref:
            raise ControlError("invalid", f"a {flavour.word} name or ID is required")
        return resolve(self._store.view().list(flavour.kind), ref, flavour.word, lambda o: o.spec.annotations.name)

    async def _create(self, obj, flavour: _Flavour):
        name = obj.spec.annotations.name

        def fn(tx):
            for other in tx.list(flavour.kind):
                if other.spec.annotations.name.lower() == name.lower():
                    raise ControlError("conflict", name_conflict_message(flavour.word, name, other.id))
            tx.create(obj)

        await write(self._store, fn, f"create {flavour.word} {name}")
        log.info("%s %s (%s) created", flavour.word, name, obj.id)
        return self._store.view().get(flavour.kind, obj.id)

    async def _remove(self, ref: str, flavour: _Flavour) -> None:
        found = self._find(ref, flavour)
        name = found.spec.annotations.name

        def fn(tx):
            current = tx.get(flavour.kind, found.id)
            if current is None:
                raise ControlError("not_found", f"{flavour.word} {ref} not found")
            using = users(tx.view, current, flavour)
            if using:
                plural = "services" if len(using) > 1 else "service"
                raise ControlError("precondition", f"{flavour.word} '{name}' is in use by the following "
                                                   f"{plural}: {', '.join(using)}")
            tx.delete(current)

        await write(self._store, fn, f"remove {flavour.word} {name}")
        log.info("%s %s (%s) removed", flavour.word, name, found.id)

    async def _update(self, ref: str, version: int, spec, flavour: _Flavour, same_data) -> Any:
        """Docker's secret/config update: only the labels may change (swarmkit's rule); the name and
        the data (when given) must be the stored ones. ``same_data(current)``: whether the data
        sent equals the stored data. A stale ``version`` is "update out of sequence"."""
        found = self._find(ref, flavour)
        name = found.spec.annotations.name

        def fn(tx):
            current = tx.get(flavour.kind, found.id)
            if current is None:
                raise ControlError("not_found", f"{flavour.word} {ref} not found")
            if version != current.meta.version:
                raise ControlError("conflict", f"update {flavour.word} {name}: update out of sequence "
                                               f"(version {version}, current {current.meta.version})")
            if spec.annotations.name != name or not same_data(current):
                raise ControlError("invalid", f"update {flavour.word} {name}: only updates to Labels are allowed")
            new = copy_of(current)
            new.spec.annotations.labels.clear()
            new.spec.annotations.labels.update(spec.annotations.labels)
            if new != current:
                tx.update(new)

        await write(self._store, fn, f"update {flavour.word} {name}")
        return self._store.view().get(flavour.kind, found.id)

    def _list(self, filters: dict[str, str], flavour: _Flavour) -> list:
        for key in filters:
            if key not in _FILTERS:
                raise ControlError("invalid", f"invalid filter '{key}'")      # the docker daemon's words
        return sorted((o for o in self._store.view().list(flavour.kind) if matches(o, filters)),
                      key=lambda o: (o.spec.annotations.name, o.id))

    # -- secrets -------------------------------------------------------------------------------
    async def create_secret(self, request: control_pb2.CreateSecretRequest) -> control_pb2.CreateSecretResponse:
        """Validate the spec, seal the data and write a new Secret; the response has no data."""
        check_spec(request.spec, SECRETS)
        secret = objects_pb2.Secret(id=new_id())
        secret.spec.annotations.CopyFrom(request.spec.annotations)
        try:
            secret.spec.data = self._box.seal(secret.id, request.spec.data)
        except SecretBoxError as err:
            raise ControlError("unavailable", f"create secret {request.spec.annotations.name}: {err}") from err
        stored = await self._create(secret, SECRETS)
        return control_pb2.CreateSecretResponse(secret=public_secret(stored))

    async def get_secret(self, request: control_pb2.GetSecretRequest) -> control_pb2.GetSecretResponse:
        return control_pb2.GetSecretResponse(secret=public_secret(self._find(request.secret_id, SECRETS)))

    async def list_secrets(self, request: control_pb2.ListSecretsRequest) -> control_pb2.ListSecretsResponse:
        return control_pb2.ListSecretsResponse(
            secrets=[public_secret(s) for s in self._list(dict(request.filters), SECRETS)])

    async def remove_secret(self, request: control_pb2.RemoveSecretRequest) -> control_pb2.RemoveSecretResponse:
        """Delete the secret unless a service uses it (checked in the delete's transaction)."""
        await self._remove(request.secret_id, SECRETS)
        return control_pb2.RemoveSecretResponse()

    async def update_secret(self, request: control_pb2.UpdateSecretRequest) -> control_pb2.UpdateSecretResponse:
        def same_data(current) -> bool:
            if not request.spec.data:
                return True
            try:
                return self._box.open(current.id, current.spec.data) == request.spec.data
            except SecretBoxError as err:
                raise ControlError("unavailable", f"update secret {current.spec.annotations.name}: {err}") from err
        updated = await self._update(request.secret_id, request.version, request.spec, SECRETS, same_data)
        return control_pb2.UpdateSecretResponse(secret=public_secret(updated))

    # -- configs -------------------------------------------------------------------------------
    async def update_config(self, request: control_pb2.UpdateConfigRequest) -> control_pb2.UpdateConfigResponse:
        def same_data(current) -> bool:
            return ((not request.spec.data or request.spec.data == current.spec.data)
                    and request.spec.templating == current.spec.templating)
        updated = await self._update(request.config_id, request.version, request.spec, CONFIGS, same_data)
        return control_pb2.UpdateConfigResponse(config=updated)

    async def create_config(self, request: control_pb2.CreateConfigRequest) -> control_pb2.CreateConfigResponse:
        check_spec(request.spec, CONFIGS)
        config = objects_pb2.Config(id=new_id(), spec=request.spec)
        stored = await self._create(config, CONFIGS)
        return control_pb2.CreateConfigResponse(config=stored)

    async def get_config(self, request: control_pb2.GetConfigRequest) -> control_pb2.GetConfigResponse:
        return control_pb2.GetConfigResponse(config=self._find(request.config_id, CONFIGS))

    async def list_configs(self, request: control_pb2.ListConfigsRequest) -> control_pb2.ListConfigsResponse:
        return control_pb2.ListConfigsResponse(configs=self._list(dict(request.filters), CONFIGS))

    async def remove_config(self, request: control_pb2.RemoveConfigRequest) -> control_pb2.RemoveConfigResponse:
        await self._remove(request.config_id, CONFIGS)
        return control_pb2.RemoveConfigResponse()
