"""Bounds shared by the CLI, the stack loader, the ControlAPI (the authority) and the orchestrator.

``MAX_REPLICAS``: the most replicas one service may ask for. Docker sets no bound; one absurd
request (10^12 replicas) made every manager that led build tasks until it ran out of memory
(issue 11), so Shoal refuses more than 100,000, far beyond the 50,000 tasks a cluster is built
for (docs/leader-scale.md). The orchestrator also creates at most ``MAX_NEW_TASKS_PER_PASS``
tasks per service and pass, so even an accepted large scale is built in bounded steps.

Between those bounds a pass creates as many tasks as the service has slots already (at least
``MIN_NEW_TASKS_PER_PASS``): each pass reads every task of the service, so a constant step built
N tasks in N/1,000 passes of up to N tasks each (50 passes and 1.25 million task reads for 50,000
replicas: half of the leader's samples in bench/scale.py); doubling builds them in about a
dozen passes, each at most doubling what the service holds.
"""

MAX_REPLICAS = 100_000
MIN_NEW_TASKS_PER_PASS = 1_000
MAX_NEW_TASKS_PER_PASS = 10_000

# SwarmKit's MaxSecretSize and MaxConfigSize: data must be larger than 0 and less than these.
MAX_SECRET_BYTES = 500 * 1024
MAX_CONFIG_BYTES = 1000 * 1024
