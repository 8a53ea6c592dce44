"""The worker role of every node: a session with the leader's dispatcher, and (through
agent_runtime.api) the tasks it is assigned."""
