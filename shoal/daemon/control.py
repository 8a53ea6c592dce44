"""The ControlAPI servicer on shoald's root-only unix socket: what the ``shoal`` CLI calls.

Swarm membership (init, join, leave) and Info are answered by the daemon; network attachment of
one-off containers by shoal.netattach; every cluster call by this node's manager, or refused with
Docker's message on a node that is not one. Errors become gRPC status codes here and only here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, AsyncIterator, Awaitable, Callable, NoReturn, TypeAlias, TypeVar

import grpc

from manager.controlapi import GRPC_STATUS, ControlAPI, ControlError
from manager.events import FilterError, parse_filters
from manager.state import StoreError
from proto import control_pb2 as pb, control_pb2_grpc
from shoal.daemon import events as daemon_events
from shoal.daemon.config import DaemonError
from shoal.netattach import attach_network, detach_network

if TYPE_CHECKING:
    from shoal.daemon.roles import Daemon

R = TypeVar("R")
Context: TypeAlias = grpc.aio.ServicerContext

NOT_A_MANAGER = ("this node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. "
                 "Please run this command on a manager node or promote the current node to a manager.")
LOCKED = ("Swarm is encrypted and needs to be unlocked before it can be used. Please use \"shoal swarm unlock\" "
          "to unlock it.")
NOT_IN_SWARM = ("this node is not a swarm manager. Use \"shoal swarm init\" or \"shoal swarm join\" to connect "
                "this node to swarm and try again.")


class LocalControl(control_pb2_grpc.ControlServicer):
    def __init__(self, daemon: Daemon):
        self.d = daemon

    @staticmethod
    async def _abort(context: Context, code: grpc.StatusCode, message: str) -> NoReturn:
        await context.abort(code, message)
        raise AssertionError("grpc's context.abort returned")  # it raises

    async def _abort_for(self, context: Context, err: Exception) -> NoReturn:
        if isinstance(err, (DaemonError, ControlError)):
            await self._abort(context, GRPC_STATUS.get(err.code, grpc.StatusCode.UNKNOWN), str(err))
        await self._abort(context, grpc.StatusCode.UNAVAILABLE, str(err))

    async def _call(self, context: Context, fn: Callable[..., Awaitable[R]], *args: object) -> R:
        try:
            return await fn(*args)
        except (DaemonError, ControlError, StoreError) as err:
            await self._abort_for(context, err)

    async def _control(self, context: Context) -> ControlAPI:
        """This node's manager's ControlAPI; aborts FAILED_PRECONDITION on a node that is not a manager."""
        manager = self.d.manager
        if manager is None and self.d.locked:
            await self._abort(context, grpc.StatusCode.FAILED_PRECONDITION, LOCKED)
        if manager is None:
            await self._abort(context, grpc.StatusCode.FAILED_PRECONDITION,
                              NOT_A_MANAGER if self.d.node else NOT_IN_SWARM)
        return manager.control

    # -- answered by the daemon ------------------------------------------------------
    async def Info(self, request: pb.InfoRequest, context: Context) -> pb.InfoResponse:
        return self.d.info()

    async def SwarmInit(self, request: pb.SwarmInitRequest, context: Context) -> pb.SwarmInitResponse:
        return await self._call(context, self.d.init, request)

    async def SwarmJoin(self, request: pb.SwarmJoinRequest, context: Context) -> pb.SwarmJoinResponse:
        return await self._call(context, self.d.join, request)

    async def SwarmLeave(self, request: pb.SwarmLeaveRequest, context: Context) -> pb.SwarmLeaveResponse:
        return await self._call(context, self.d.leave, request)

    async def SwarmUnlock(self, request: pb.SwarmUnlockRequest, context: Context) -> pb.SwarmUnlockResponse:
        return await self._call(context, self.d.unlock, request)

    async def GetUnlockKey(self, request: pb.GetUnlockKeyRequest, context: Context) -> pb.GetUnlockKeyResponse:
        return await self._call(context, (await self._control(context)).get_unlock_key, request)

    async def IssueClientCertificate(self, request: pb.IssueClientCertificateRequest,
                                     context: Context) -> pb.IssueClientCertificateResponse:
        return await self._call(context, (await self._control(context)).issue_client_certificate, request)

    async def SwarmBackup(self, request: pb.SwarmBackupRequest, context: Context) -> pb.SwarmBackupResponse:
        return await self._call(context, self.d.backup, request)

    async def AttachNetwork(self, request: pb.AttachNetworkRequest, context: Context) -> pb.AttachNetworkResponse:
        """A one-off container on this node joins an attachable network (shoal/netattach.py)."""
        return await self._call(context, attach_network, self.d, request)

    async def DetachNetwork(self, request: pb.DetachNetworkRequest, context: Context) -> pb.DetachNetworkResponse:
        return await self._call(context, detach_network, self.d, request)

    async def ServiceLogs(self, request: pb.ServiceLogsRequest, context: Context) -> AsyncIterator[pb.ServiceLogsMessage]:
        await self._control(context)
        assert self.d.manager is not None
        try:
            async for message in self.d.manager.logs.service_logs(request):
                yield message
        except (DaemonError, ControlError) as err:
            await self._abort_for(context, err)

    async def Events(self, request: pb.EventsRequest, context: Context) -> AsyncIterator[pb.EventMessage]:
        """Cluster events where this node is a manager, container events where it runs a runtime."""
        try:
            filters = parse_filters(request.filters)
        except FilterError as err:
            await self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(err))
        manager = self.d.manager
        if manager is None and self.d.runtime is None:
            await self._abort(context, grpc.StatusCode.FAILED_PRECONDITION, NOT_IN_SWARM)
        try:
            async for ev in daemon_events.stream(manager.events if manager is not None else None, self.d.runtime,
                                                 request.since_ns, request.until_ns, filters):
                yield pb.EventMessage(json=daemon_events.encode(ev))
        except RuntimeError as err:
            await self._abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, str(err))

    # -- answered by this node's manager ---------------------------------------------
    async def GetCluster(self, request: pb.GetClusterRequest, context: Context) -> pb.GetClusterResponse:
        return await self._call(context, (await self._control(context)).get_cluster, request)

    async def UpdateCluster(self, request: pb.UpdateClusterRequest, context: Context) -> pb.UpdateClusterResponse:
        return await self._call(context, (await self._control(context)).update_cluster, request)

    async def ListNodes(self, request: pb.ListNodesRequest, context: Context) -> pb.ListNodesResponse:
        return await self._call(context, (await self._control(context)).list_nodes, request)

    async def GetNode(self, request: pb.GetNodeRequest, context: Context) -> pb.GetNodeResponse:
        return await self._call(context, (await self._control(context)).get_node, request)

    async def UpdateNode(self, request: pb.UpdateNodeRequest, context: Context) -> pb.UpdateNodeResponse:
        return await self._call(context, (await self._control(context)).update_node, request)

    async def RemoveNode(self, request: pb.RemoveNodeRequest, context: Context) -> pb.RemoveNodeResponse:
        return await self._call(context, (await self._control(context)).remove_node, request)

    async def CreateService(self, request: pb.CreateServiceRequest, context: Context) -> pb.CreateServiceResponse:
        return await self._call(context, (await self._control(context)).services.create_service, request)

    async def GetService(self, request: pb.GetServiceRequest, context: Context) -> pb.GetServiceResponse:
        return await self._call(context, (await self._control(context)).services.get_service, request)

    async def UpdateService(self, request: pb.UpdateServiceRequest, context: Context) -> pb.UpdateServiceResponse:
        return await self._call(context, (await self._control(context)).services.update_service, request)

    async def NormalizeServiceSpec(self, request: pb.NormalizeServiceSpecRequest,
                                   context: Context) -> pb.NormalizeServiceSpecResponse:
        return await self._call(context, (await self._control(context)).services.normalize_service_spec, request)

    async def RemoveService(self, request: pb.RemoveServiceRequest, context: Context) -> pb.RemoveServiceResponse:
        return await self._call(context, (await self._control(context)).services.remove_service, request)

    async def ListServices(self, request: pb.ListServicesRequest, context: Context) -> pb.ListServicesResponse:
        return await self._call(context, (await self._control(context)).services.list_services, request)

    async def ListTasks(self, request: pb.ListTasksRequest, context: Context) -> pb.ListTasksResponse:
        return await self._call(context, (await self._control(context)).services.list_tasks, request)

    async def GetTask(self, request: pb.GetTaskRequest, context: Context) -> pb.GetTaskResponse:
        return await self._call(context, (await self._control(context)).services.get_task, request)

    async def CreateNetwork(self, request: pb.CreateNetworkRequest, context: Context) -> pb.CreateNetworkResponse:
        return await self._call(context, (await self._control(context)).networks.create_network, request)

    async def GetNetwork(self, request: pb.GetNetworkRequest, context: Context) -> pb.GetNetworkResponse:
        return await self._call(context, (await self._control(context)).networks.get_network, request)

    async def ListNetworks(self, request: pb.ListNetworksRequest, context: Context) -> pb.ListNetworksResponse:
        return await self._call(context, (await self._control(context)).networks.list_networks, request)

    async def RemoveNetwork(self, request: pb.RemoveNetworkRequest, context: Context) -> pb.RemoveNetworkResponse:
        return await self._call(context, (await self._control(context)).networks.remove_network, request)

    async def CreateSecret(self, request: pb.CreateSecretRequest, context: Context) -> pb.CreateSecretResponse:
        return await self._call(context, (await self._control(context)).secrets.create_secret, request)

    async def GetSecret(self, request: pb.GetSecretRequest, context: Context) -> pb.GetSecretResponse:
        return await self._call(context, (await self._control(context)).secrets.get_secret, request)

    async def ListSecrets(self, request: pb.ListSecretsRequest, context: Context) -> pb.ListSecretsResponse:
        return await self._call(context, (await self._control(context)).secrets.list_secrets, request)

    async def RemoveSecret(self, request: pb.RemoveSecretRequest, context: Context) -> pb.RemoveSecretResponse:
        return await self._call(context, (await self._control(context)).secrets.remove_secret, request)

    async def UpdateSecret(self, request: pb.UpdateSecretRequest, context: Context) -> pb.UpdateSecretResponse:
        return await self._call(context, (await self._control(context)).secrets.update_secret, request)

    async def UpdateConfig(self, request: pb.UpdateConfigRequest, context: Context) -> pb.UpdateConfigResponse:
        return await self._call(context, (await self._control(context)).secrets.update_config, request)

    async def CreateConfig(self, request: pb.CreateConfigRequest, context: Context) -> pb.CreateConfigResponse:
        return await self._call(context, (await self._control(context)).secrets.create_config, request)

    async def GetConfig(self, request: pb.GetConfigRequest, context: Context) -> pb.GetConfigResponse:
        return await self._call(context, (await self._control(context)).secrets.get_config, request)

    async def ListConfigs(self, request: pb.ListConfigsRequest, context: Context) -> pb.ListConfigsResponse:
        return await self._call(context, (await self._control(context)).secrets.list_configs, request)

    async def RemoveConfig(self, request: pb.RemoveConfigRequest, context: Context) -> pb.RemoveConfigResponse:
        return await self._call(context, (await self._control(context)).secrets.remove_config, request)
