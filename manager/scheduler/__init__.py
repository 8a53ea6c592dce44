"""The scheduler: pending tasks x nodes -> placements, as a pure function, plus the leader-only
component that runs it against the store.

Exports:
    schedule, schedule_on, SchedulePlan, Strategy, planned_task_changes      (schedule.py)
    NodeInfo, build_node_infos (nodeinfo.py); NodeSet, kept from store events (nodeset.py)
    PIPELINE and the filter classes, Request, Verdict, explain   (filters.py)

Placement constraints are in manager.constraints (shared with the orchestrator and the ControlAPI).
"""

from .filters import (
    PIPELINE, AvailabilityFilter, ConstraintFilter, Filter, HostPortFilter, MaxReplicasFilter,
    ReadyFilter, Request, ResourceFilter, Verdict, explain,
)
from .nodeinfo import NodeInfo, build_node_infos, host_ports
from .nodeset import NodeSet
from .schedule import SchedulePlan, Strategy, planned_task_changes, schedule, schedule_on

__all__ = [
    "AvailabilityFilter", "ConstraintFilter", "Filter", "HostPortFilter", "MaxReplicasFilter", "NodeInfo", "NodeSet",
    "PIPELINE", "ReadyFilter", "Request", "ResourceFilter", "SchedulePlan", "Strategy", "Verdict",
    "build_node_infos", "explain", "host_ports", "planned_task_changes", "schedule", "schedule_on",
]
