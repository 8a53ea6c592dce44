"""The scheduler: pending tasks x nodes -> placements, as a pure function, plus the leader-only
component that runs it against the store.

Exports:
    schedule, SchedulePlan, Strategy, planned_task_changes      (schedule.py)
    parse_constraints, parse_constraint, Constraint              (constraint.py)
    PIPELINE and the filter classes, Request, Verdict, explain   (filters.py)
    SchedulerError, InvalidConstraint                            (errors.py)
"""

from .constraint import Constraint, constraints_of, matches, parse_constraint, parse_constraints
from .errors import InvalidConstraint, SchedulerError
from .filters import (
    PIPELINE, AvailabilityFilter, ConstraintFilter, Filter, HostPortFilter, MaxReplicasFilter,
    ReadyFilter, Request, ResourceFilter, Verdict, explain,
)
from .nodeinfo import NodeInfo, build_node_infos, host_ports
from .schedule import SchedulePlan, Strategy, planned_task_changes, schedule

__all__ = [
    "AvailabilityFilter", "Constraint", "ConstraintFilter", "Filter", "HostPortFilter",
    "InvalidConstraint", "MaxReplicasFilter", "NodeInfo", "PIPELINE", "ReadyFilter", "Request",
    "ResourceFilter", "SchedulePlan", "SchedulerError", "Strategy", "Verdict", "build_node_infos",
    "constraints_of", "explain", "host_ports", "matches", "parse_constraint", "parse_constraints",
    "planned_task_changes", "schedule",
]
