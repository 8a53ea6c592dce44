"""The allocator: the leader component that gives networks their subnets and VNIs, services
their VIPs and tasks their addresses, by running the pure IPAM (manager.ipam) over the store.

It talks to the orchestrator and the scheduler only through the store (tasks move NEW ->
PENDING here); an import-linter contract keeps the three independent.
"""
