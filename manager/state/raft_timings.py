"""Raft timers as cluster settings: Docker's ElectionTick and HeartbeatTick, in ticks of TICK seconds.

SwarmKit's tick is one second (ElectionTick 10 = 10 s before a follower stands for election);
Shoal's is 100 ms, so the same names give a failover within about two seconds. Every manager
applies the cluster's ``spec.raft`` as soon as the change commits (manager.state.raft). No
pysyncobj here (the ControlAPI and shoald check settings with it).
"""

from __future__ import annotations

from dataclasses import dataclass

TICK = 0.1                      # seconds
DEFAULT_ELECTION_TICK = 10      # 1 s: a follower that hears no leader for 1-1.5 s stands for election
DEFAULT_HEARTBEAT_TICK = 1      # 100 ms between the leader's append-entries
MAX_ELECTION_TICK = 600         # 60 s
MAX_HEARTBEAT_TICK = 100


@dataclass(frozen=True)
class RaftTimings:
    """Timers, in seconds (the defaults are the default ticks).

    ``election_min``/``election_max``: a follower that hears no leader for a random time in this
    range starts an election. ``heartbeat``: the leader's append-entries period (< election_min/3).
    ``leader_fallback``: a leader that hears from no majority for this long steps down.
    ``connection_timeout``: a silent connection is dead (>= election_max). ``connection_retry``:
    pause between reconnect attempts. ``tick``: the tick thread's longest sleep.
    """

    election_min: float = DEFAULT_ELECTION_TICK * TICK
    election_max: float = DEFAULT_ELECTION_TICK * TICK * 1.5
    heartbeat: float = DEFAULT_HEARTBEAT_TICK * TICK
    leader_fallback: float = DEFAULT_ELECTION_TICK * TICK
    connection_timeout: float = DEFAULT_ELECTION_TICK * TICK * 2
    connection_retry: float = 0.25
    tick: float = 0.05


def check_ticks(election_tick: int, heartbeat_tick: int) -> str | None:
    """Why these ticks are not allowed (0 means the default), or None."""
    election = election_tick or DEFAULT_ELECTION_TICK
    heartbeat = heartbeat_tick or DEFAULT_HEARTBEAT_TICK
    if election_tick < 0 or heartbeat_tick < 0:
        return "election and heartbeat ticks must be positive"
    if heartbeat > MAX_HEARTBEAT_TICK:
        return f"heartbeat tick {heartbeat} is over the maximum of {MAX_HEARTBEAT_TICK}"
    if election > MAX_ELECTION_TICK:
        return f"election tick {election} is over the maximum of {MAX_ELECTION_TICK}"
    if election <= 3 * heartbeat:
        return (f"election tick ({election}) must be greater than three heartbeat ticks "
                f"({3 * heartbeat}): a follower would stand for election between two heartbeats")
    return None


def timings_from_ticks(election_tick: int, heartbeat_tick: int, base: RaftTimings = RaftTimings()) -> RaftTimings:
    """The timers for a cluster's ticks (0 means the default). Raises ValueError for bad ticks."""
    problem = check_ticks(election_tick, heartbeat_tick)
    if problem:
        raise ValueError(problem)
    election = (election_tick or DEFAULT_ELECTION_TICK) * TICK
    return RaftTimings(election_min=election, election_max=election * 1.5,
                       heartbeat=(heartbeat_tick or DEFAULT_HEARTBEAT_TICK) * TICK,
                       leader_fallback=election, connection_timeout=election * 2,
                       connection_retry=base.connection_retry, tick=base.tick)
