"""Orchestrators: services -> tasks. Pure decision functions (``reconcile(service, tasks, nodes,
now) -> Plan``) for replicated and global services and jobs, restart policy, task history and
rolling updates, plus the leader-only component that applies them to the store.

Exports:
    reconcile, reconcile_removed, history_retention                       (reconcile.py)
    reconcile_replicated, reconcile_replicated_job                        (replicated.py)
    reconcile_global, reconcile_global_job                                (global_.py)
    Plan                                                                  (plan.py)
    decide_restart, RestartDecision, start_gate, prune_history,
    DEFAULT_RESTART, DEFAULT_HISTORY_RETENTION, OLD_TASK_TIMEOUT          (restart.py)
    plan_update, update_config, DEFAULT_UPDATE                            (update.py)
    new_task, is_dirty                                                    (task.py)
    OrchestratorError, WrongServiceMode                                   (errors.py)
"""

from .errors import OrchestratorError, WrongServiceMode
from .global_ import reconcile_global, reconcile_global_job
from .plan import Plan
from .reconcile import history_retention, reconcile, reconcile_removed
from .replicated import reconcile_replicated, reconcile_replicated_job
from .restart import (
    DEFAULT_HISTORY_RETENTION, DEFAULT_RESTART, OLD_TASK_TIMEOUT, RestartDecision, decide_restart,
    prune_history, start_gate,
)
from .task import is_dirty, new_task
from .update import DEFAULT_UPDATE, plan_update, update_config

__all__ = [
    "DEFAULT_HISTORY_RETENTION", "DEFAULT_RESTART", "DEFAULT_UPDATE", "OLD_TASK_TIMEOUT",
    "OrchestratorError", "Plan", "RestartDecision", "WrongServiceMode", "decide_restart",
    "history_retention", "is_dirty", "new_task", "plan_update", "prune_history", "reconcile",
    "reconcile_global", "reconcile_global_job", "reconcile_removed", "reconcile_replicated",
    "reconcile_replicated_job", "start_gate", "update_config",
]
