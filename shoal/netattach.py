"""Network attachments of one-off containers as shoald serves them (`shoal run --network NET`).

The CLI asks its local shoald (``LocalControl.AttachNetwork``); shoald fills in its own node ID
and has a manager record the attachment: its own manager role if it has one, otherwise a
manager reached over the cluster's mutual-TLS port, where managers answer exactly these two
Control calls (``AttachmentServicer``) for any node of the cluster, with the node ID taken from
the caller's certificate (a node attaches and detaches only its own containers).
``attach_network`` then waits until this node's runtime holds the network (the dispatcher's
network state names it), so the CLI can create the container with the address right away; or,
when the request carries the container (``shoal run``), creates and starts it itself, so one call
allocates and runs and a client dying between two calls leaks nothing. The address is released
when the container goes, and leaked ones at shoald's next start (``worker/attachments.py``).

Errors are ``ControlError`` with the manager's message; ``LocalControl`` turns them into
gRPC status codes. Use from shoald's loop.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random

import grpc

from manager.ca import channel_credentials, channel_options, require_role
from manager.controlapi import GRPC_STATUS, ControlError
from proto import control_pb2, control_pb2_grpc
from proto.ports import mtls_addr

log = logging.getLogger(__name__)

SYNC_TIMEOUT = 10.0      # how long an attach waits for this node's data plane to carry the network
CALL_TIMEOUT = 15.0      # a forwarded call (the manager itself waits up to 5 s for an address)
CONTROL_SERVICE = "shoal.v1.Control"

# A manager's refusal, back to a ControlError code (UNAVAILABLE is not one: try the next manager).
_CODES = {status: code for code, status in GRPC_STATUS.items() if code != "unavailable"}
_CODES[grpc.StatusCode.PERMISSION_DENIED] = "precondition"


def _not_in_swarm() -> ControlError:
    return ControlError("precondition", "this node is not part of a swarm: run \"shoal swarm init\" or "
                                        "\"shoal swarm join\" before attaching containers to swarm networks")


async def attach_network(daemon, request: control_pb2.AttachNetworkRequest) -> control_pb2.AttachNetworkResponse:
    """Attach on behalf of this node, then wait (up to SYNC_TIMEOUT) for the local runtime to
    hold the network; detach again and raise ControlError unavailable if it never does."""
    if daemon.node is None:
        raise _not_in_swarm()
    target = await _connect_target(daemon, request.connect_container) if request.connect_container else None
    attach = control_pb2.AttachNetworkRequest()
    attach.CopyFrom(request)
    attach.node_id = daemon.node.node_id
    attach.connect_container = ""
    if target is not None:
        attach.container_id = target.name
    if daemon.manager is not None:
        response = await daemon.manager.control.networks.attach_network(attach)
    else:
        response = await _forward(daemon, "AttachNetwork", attach)
    network_id = response.attachment.network_id
    worker = daemon.worker
    if worker is not None:
        worker.attachments.ours.add(response.attachment_id)   # its container may be on its way
    if worker is not None and not await worker.network.wait_for_networks([network_id], SYNC_TIMEOUT):
        await detach_network(daemon, control_pb2.DetachNetworkRequest(attachment_id=response.attachment_id))
        raise ControlError("unavailable", f"attach container {request.container_id}: this node's data plane did "
                                          f"not set up network {network_id} within {SYNC_TIMEOUT:.0f}s")
    if request.container:
        # Shielded: a client that goes away does not cut the run between create and start.
        response.created_container_id = await asyncio.shield(_run_container(daemon, request, response))
    elif target is not None:
        await asyncio.shield(_connect_container(daemon, target.id, response))
    return response


async def _connect_target(daemon, ref: str):
    """The container a `network connect` names, from this node's runtime (ControlError otherwise)."""
    from agent_runtime.api import ShoalRuntimeError
    if daemon.runtime is None:
        raise ControlError("precondition", "this node runs no shoal-runtimed: it has no containers to connect")
    try:
        return await daemon.runtime.inspect(ref)
    except ShoalRuntimeError as exc:
        raise _runtime_error(exc) from None


async def _connect_container(daemon, container_id: str, response: control_pb2.AttachNetworkResponse) -> None:
    """Give the allocated attachment to an existing container (its new interface); on any failure
    release the address and raise ControlError with the runtime's message."""
    from agent_runtime.api import NetworkAttachment, ShoalRuntimeError
    allocated = response.attachment
    try:
        try:
            interface = await daemon.runtime.network_connect(container_id, NetworkAttachment(
                network_id=allocated.network_id, address=allocated.addresses[0], aliases=list(allocated.aliases),
                attachment_id=response.attachment_id))
        except ShoalRuntimeError as exc:
            raise _runtime_error(exc) from None
    except BaseException:
        await _release(daemon, response.attachment_id, f"connecting container {container_id[:12]} failed")
        raise
    log.info("container %s connected to network %s as %s (attachment %s, address %s)", container_id[:12],
             allocated.network_id, interface, response.attachment_id, allocated.addresses[0])


async def _release(daemon, attachment_id: str, why: str) -> None:
    """Release an attachment now; if no manager takes it, the worker retries until one does."""
    try:
        await detach_network(daemon, control_pb2.DetachNetworkRequest(attachment_id=attachment_id))
    except Exception as exc:  # noqa: BLE001 - handed to the worker's retrying release
        log.warning("attachment %s (%s): releasing it failed: %s", attachment_id, why, exc)
        if daemon.worker is not None:
            daemon.worker.attachments.ours.discard(attachment_id)
            daemon.worker.attachments.release(attachment_id, why)


_RUNTIME_CODES = {404: "not_found", 400: "invalid", 409: "conflict", 403: "precondition"}


def _runtime_error(exc) -> ControlError:
    """The ControlError for shoal-runtimed's refusal (its HTTP status), with its message."""
    return ControlError(_RUNTIME_CODES.get(exc.status, "unavailable"), str(exc))


async def _run_container(daemon, request: control_pb2.AttachNetworkRequest,
                         response: control_pb2.AttachNetworkResponse) -> str:
    """Create and start the container of a one-call `shoal run --network NET` with its attachment;
    on any failure remove what was made and release the address, then raise ControlError with
    the runtime's message."""
    from agent_runtime.api import ATTACHMENT_LABEL, ContainerSpec, NetworkAttachment, ShoalRuntimeError
    cid = ""
    try:
        if daemon.runtime is None:
            raise ControlError("precondition", "this node runs no shoal-runtimed: it cannot run containers")
        try:
            spec = ContainerSpec.from_json(json.loads(request.container))
        except (ValueError, TypeError, KeyError, ShoalRuntimeError) as exc:
            raise ControlError("invalid", f"container spec: {exc}") from None
        allocated = response.attachment
        spec.network = "none"
        spec.networks = [NetworkAttachment(network_id=allocated.network_id, address=allocated.addresses[0],
                                           aliases=list(allocated.aliases), attachment_id=response.attachment_id)]
        spec.labels[ATTACHMENT_LABEL] = response.attachment_id
        try:
            cid = await daemon.runtime.create(spec)
            await daemon.runtime.start(cid)
        except ShoalRuntimeError as exc:
            raise _runtime_error(exc) from None
        return cid
    except BaseException:
        if cid:
            try:
                await daemon.runtime.remove(cid, force=True)
            except Exception as exc:  # noqa: BLE001 - reported; the release below still happens
                log.warning("run of attachment %s: removing container %s failed: %s",
                            response.attachment_id, cid[:12], exc)
        try:
            await detach_network(daemon, control_pb2.DetachNetworkRequest(attachment_id=response.attachment_id))
        except Exception as exc:  # noqa: BLE001 - the worker's release retries it (its container is gone)
            log.warning("run of attachment %s: releasing it failed: %s", response.attachment_id, exc)
            if daemon.worker is not None:
                daemon.worker.attachments.ours.discard(response.attachment_id)
        raise


async def detach_network(daemon, request: control_pb2.DetachNetworkRequest) -> control_pb2.DetachNetworkResponse:
    """Remove one of this node's attachments (a gone attachment is not an error); or, given a
    container and a network (`network disconnect`), take the container off that network and
    release the attachment it held."""
    if daemon.node is None:
        raise _not_in_swarm()
    if request.container:
        return await _disconnect_container(daemon, request)
    if daemon.manager is not None:
        return await daemon.manager.control.networks.detach_network(request, node_id=daemon.node.node_id)
    return await _forward(daemon, "DetachNetwork", request)


async def _disconnect_container(daemon, request: control_pb2.DetachNetworkRequest) -> control_pb2.DetachNetworkResponse:
    from agent_runtime.api import ShoalRuntimeError
    if daemon.runtime is None:
        raise ControlError("precondition", "this node runs no shoal-runtimed: it has no containers to disconnect")
    if not request.network_id:
        raise ControlError("invalid", "network disconnect: a network is required")
    try:
        gone = await daemon.runtime.network_disconnect(request.container, request.network_id, request.force)
    except ShoalRuntimeError as exc:
        raise _runtime_error(exc) from None
    if gone.get("AttachmentID"):
        await _release(daemon, gone["AttachmentID"], f"container {request.container} left network {request.network_id}")
    return control_pb2.DetachNetworkResponse()


async def _forward(daemon, method: str, request):
    """Call ``method`` on a manager over mutual TLS, trying each known manager; ControlError with
    the manager's message when it refuses, unavailable when none answers."""
    node = daemon.node
    cert, key, ca = daemon.state.load_certificates()
    credentials = channel_credentials(ca, cert, key)
    managers = list(node.managers or [node.grpc_addr])
    random.shuffle(managers)
    last = None
    for addr in managers:
        async with grpc.aio.secure_channel(mtls_addr(addr), credentials, options=channel_options()) as channel:
            stub = control_pb2_grpc.ControlStub(channel)
            try:
                return await getattr(stub, method)(request, timeout=CALL_TIMEOUT)
            except grpc.aio.AioRpcError as err:
                if err.code() in _CODES:
                    raise ControlError(_CODES[err.code()], err.details() or err.code().name) from None
                log.info("%s through manager %s failed: %s", method, addr, err.details())
                last = err
    raise ControlError("unavailable", f"{method}: no manager answered ({last.details() if last else 'none known'})")


class AttachmentServicer:
    """AttachNetwork and DetachNetwork of the Control service on a manager's mutual-TLS port, for
    nodes without a manager role. The caller's certificate gives the node ID."""

    def __init__(self, manager, cluster_id: str):
        self._manager = manager
        self._authorize = functools.partial(require_role, cluster_id=cluster_id)

    def register(self, server: grpc.aio.Server) -> None:
        handlers = {
            "AttachNetwork": grpc.unary_unary_rpc_method_handler(
                self.AttachNetwork, request_deserializer=control_pb2.AttachNetworkRequest.FromString,
                response_serializer=control_pb2.AttachNetworkResponse.SerializeToString),
            "DetachNetwork": grpc.unary_unary_rpc_method_handler(
                self.DetachNetwork, request_deserializer=control_pb2.DetachNetworkRequest.FromString,
                response_serializer=control_pb2.DetachNetworkResponse.SerializeToString),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(CONTROL_SERVICE, handlers),))

    async def AttachNetwork(self, request, context):
        identity = await self._authorize(context)
        request.node_id = identity.node_id
        return await self._call(context, self._manager.control.networks.attach_network, request)

    async def DetachNetwork(self, request, context):
        identity = await self._authorize(context)
        return await self._call(context, functools.partial(self._manager.control.networks.detach_network,
                                                           node_id=identity.node_id), request)

    @staticmethod
    async def _call(context, fn, request):
        try:
            return await fn(request)
        except ControlError as err:
            await context.abort(GRPC_STATUS.get(err.code, grpc.StatusCode.UNAVAILABLE), str(err))
