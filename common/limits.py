"""Bounds shared by the CLI, the stack loader, the ControlAPI (the authority) and the orchestrator.

``MAX_REPLICAS``: the most replicas one service may ask for. Docker sets no bound; one absurd
request (10^12 replicas) made every manager that led build tasks until it ran out of memory
(issue 11), so Shoal refuses more than 100,000, far beyond the 50,000 tasks a cluster is built
for (docs/leader-scale.md). The orchestrator also creates at most ``MAX_NEW_TASKS_PER_PASS``
tasks per service and pass, so even an accepted large scale is built in bounded steps.
"""

MAX_REPLICAS = 100_000
MAX_NEW_TASKS_PER_PASS = 1_000

# SwarmKit's MaxSecretSize and MaxConfigSize: data must be larger than 0 and less than these.
MAX_SECRET_BYTES = 500 * 1024
MAX_CONFIG_BYTES = 1000 * 1024
