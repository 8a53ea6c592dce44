"""Swarm membership on the manager side: issuing node certificates on join,
Raft membership changes, and the leader's role reconciler (promote/demote)."""

from manager.membership.nodeca import NodeCAServicer
from manager.membership.raftmembership import RaftMembershipServicer
from manager.membership.promotion import RoleReconciler, check_demotion, DemotionRefused

__all__ = ["NodeCAServicer", "RaftMembershipServicer", "RoleReconciler", "check_demotion", "DemotionRefused"]
