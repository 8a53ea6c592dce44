#!/bin/bash
# The second half of `make demo`, run once the lab is up (make demo LAB=NAME runs both halves):
# deploy examples/web.yml as the stack "web", show its services, ask the published port on every
# node for a page (each reply names the replica that served it), then print what to try next.
#
#   deploy/demo.sh [LAB]        (default: demo)
set -euo pipefail

LAB=${1:-demo}
cd "$(dirname "$0")/.."
BIN=$PWD/.venv/bin
PY=$BIN/python

on() {  # on HOST COMMAND...: run COMMAND on one of the lab's hosts (its own shoal socket and netns)
    local host=$1
    shift
    "$BIN/shoal-lab" exec --name "$LAB" "$host" -- "$@"
}

status=$("$BIN/shoal-lab" status --name "$LAB" --json)
registry=$(echo "$status" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["registry"])')
mapfile -t hosts < <(echo "$status" | "$PY" -c '
import json, sys
for host in json.load(sys.stdin)["hosts"]:
    print(host["name"], host["address"])')
client=$(echo "${hosts[-1]}" | cut -d" " -f1)   # requests come from the last worker's namespace

echo
echo "+ shoal stack deploy --wait -c examples/web.yml web      (REGISTRY=$registry)"
REGISTRY=$registry on manager1 shoal stack deploy --wait -c examples/web.yml web
echo
echo "+ shoal stack services web"
on manager1 shoal stack services web
echo
echo "+ requests to port 8080 of every node, from $client (the routing mesh picks a replica):"
for entry in "${hosts[@]}"; do
    read -r name address <<<"$entry"
    for _ in 1 2; do
        reply=$(on "$client" timeout 5 busybox wget -qO- "http://$address:8080/" 2>/dev/null || echo "(no answer)")
        printf '  %-9s %-15s %s\n' "$name" "$address:8080" "$reply"
    done
done

flag=""
[ "$LAB" = "lab" ] || flag=" --name $LAB"
managers=$(echo "$status" | "$PY" -c 'import json,sys; print(sum(h["role"] == "manager" for h in json.load(sys.stdin)["hosts"]))')
workers=$(( ${#hosts[@]} - managers ))
cat <<EOF

The stack "web" runs 3 replicas of examples/web.yml on the lab "$LAB" ($managers managers, $workers workers).
Try next:
  .venv/bin/shoal-lab exec$flag manager1 -- shoal service scale web_web=6
  .venv/bin/shoal-lab exec$flag manager1 -- shoal stack ps web
  .venv/bin/shoal-lab exec$flag manager1 -- shoal node ls
EOF
if [ "$managers" -ge 3 ]; then   # with fewer, the swarm loses its quorum with manager1
    echo "  .venv/bin/shoal-lab kill$flag manager1        # kill the leader; node ls from manager2 still works"
fi
echo "  .venv/bin/shoal-lab down$flag                 # tear the lab down (or: make demo-down)"
