#!/usr/bin/env bash
# Provision one Shoal host on Debian 12 (run as root; Vagrant runs it on every VM).
#
#   provision.sh --role manager|worker --address IP --join MANAGER1_IP [--first] \
#                [--source DIR | --repo GIT_URL] [--tokens DIR] [--log-level LEVEL] \
#                [--insecure-registry HOST:PORT ...] [--prefix DIR] [--bin-dir DIR] \
#                [--socket PATH] [--no-daemons] [--wheels DIR]
#
# 1. puts the project in /opt/shoal (copied from --source, default /vagrant, or cloned from --repo)
#    and runs `make install-runtime` there (only what a server needs: the runtime's Debian packages
#    and /opt/shoal/.venv with the pinned Python dependencies; no test tools, no registry);
# 2. installs and starts the systemd units shoal-runtimed and shoald (deploy/systemd/);
# 3. forms the swarm: the --first host runs `shoal swarm init` and writes the join tokens to the
#    shared --tokens directory (default /vagrant/deploy/.tokens); every other host waits for the
#    token of its role there and runs `shoal swarm join`.
# --wheels DIR installs the Python packages from a local wheel directory only (no index: a server
# or lab host without internet access). --no-daemons skips step 2 for hosts whose daemons something else runs (shoal-lab: a cluster
# test runs this script inside lab hosts with --prefix/--bin-dir in a temporary directory).
# Running it again is safe: the copy is refreshed, `make install-runtime` is idempotent, the units
# are rewritten, and a host that `shoal info` shows in a swarm does not init or join again (so a
# node that left with `shoal swarm leave` joins again on the next run).
set -euo pipefail

ROLE="" ADDRESS="" JOIN="" FIRST=0 SOURCE=/vagrant REPO="" TOKENS="" LOG_LEVEL=info
REGISTRIES=()
PREFIX=/opt/shoal
BIN_DIR=/usr/local/bin
SOCKET=/run/shoal/shoal.sock
DAEMONS=1
WHEELS=""
umask 077   # join tokens and the daemons' state are never world-readable

die() { echo "provision: $*" >&2; exit 1; }
say() { echo "provision[$(hostname)]: $*"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --role) ROLE=$2; shift 2 ;;
    --address) ADDRESS=$2; shift 2 ;;
    --join) JOIN=$2; shift 2 ;;
    --first) FIRST=1; shift ;;
    --source) SOURCE=$2; shift 2 ;;
    --repo) REPO=$2; shift 2 ;;
    --tokens) TOKENS=$2; shift 2 ;;
    --log-level) LOG_LEVEL=$2; shift 2 ;;
    --insecure-registry) REGISTRIES+=("$2"); shift 2 ;;
    --prefix) PREFIX=$2; shift 2 ;;
    --bin-dir) BIN_DIR=$2; shift 2 ;;
    --socket) SOCKET=$2; shift 2 ;;
    --no-daemons) DAEMONS=0; shift ;;
    --wheels) WHEELS=$2; shift 2 ;;
    *) die "unknown argument $1" ;;
  esac
done
case "$ROLE" in manager|worker) ;; *) die "--role must be manager or worker, got '$ROLE'" ;; esac
[ -n "$ADDRESS" ] || die "--address is required"
[ -n "$JOIN" ] || die "--join (the first manager's address) is required"
[ "$(id -u)" = 0 ] || die "must run as root"
TOKENS=${TOKENS:-$SOURCE/deploy/.tokens}

# --- 1. the project and its dependencies -------------------------------------------------------
export DEBIAN_FRONTEND=noninteractive
if ! command -v make >/dev/null || ! command -v rsync >/dev/null || ! command -v git >/dev/null; then
  say "installing make, rsync, git"
  apt-get update -q >/dev/null
  apt-get install -y -q make rsync git ca-certificates >/dev/null
fi
if [ -n "$REPO" ]; then
  if [ -d "$PREFIX/.git" ]; then
    git -C "$PREFIX" pull --ff-only -q
  else
    git clone -q "$REPO" "$PREFIX"
  fi
else
  [ -f "$SOURCE/pyproject.toml" ] || die "no Shoal checkout at $SOURCE (use --source DIR or --repo URL)"
  say "copying $SOURCE to $PREFIX"
  mkdir -p "$PREFIX"
  rsync -a --delete --exclude /.venv --exclude /.git --exclude /deploy/.tokens --exclude /build \
        --exclude __pycache__ --exclude '*.egg-info' "$SOURCE/" "$PREFIX/"
fi
say "make install-runtime"
pip_opts=""
[ -z "$WHEELS" ] || pip_opts="--no-index --find-links $WHEELS"
make -C "$PREFIX" install-runtime PIP_OPTS="$pip_opts"
mkdir -p "$BIN_DIR"
for program in shoal shoald shoal-runtimed; do
  ln -sf "$PREFIX/.venv/bin/$program" "$BIN_DIR/$program"
done
export PATH="$BIN_DIR:$PATH"

# --- 2. the daemons ----------------------------------------------------------------------------
if [ "$DAEMONS" = 1 ]; then
# The daemons' settings: /etc/shoal/daemon.json (agent_runtime/daemonconfig.py), rewritten on
# every run; `systemctl reload` applies a hand edit of the reloadable keys.
registries=""
for registry in "${REGISTRIES[@]}"; do registries="$registries${registries:+, }\"$registry\""; done
mkdir -p /etc/shoal
cat >/etc/shoal/daemon.json.new <<EOF
{
  "data-root": "/var/lib/shoal",
  "log-level": "$LOG_LEVEL",
  "log-format": "text",
  "metrics-addr": "$ADDRESS:9323",
  "insecure-registries": [$registries]
}
EOF
chmod 0644 /etc/shoal/daemon.json.new
mv /etc/shoal/daemon.json.new /etc/shoal/daemon.json
for unit in shoal-runtimed.service shoald.service; do   # the units name /opt/shoal: use --prefix
  sed "s#/opt/shoal#$PREFIX#g" "$PREFIX/deploy/systemd/$unit" >"/etc/systemd/system/$unit.new"
  chmod 0644 "/etc/systemd/system/$unit.new"
  mv "/etc/systemd/system/$unit.new" "/etc/systemd/system/$unit"
done
systemctl daemon-reload
systemctl enable -q shoal-runtimed.service
systemctl restart shoal-runtimed.service   # containers survive: the unit's KillMode=process
systemctl enable -q shoald.service
systemctl restart shoald.service
for _ in $(seq 1 120); do
  [ -S "$SOCKET" ] && break
  sleep 0.5
done
[ -S "$SOCKET" ] || die "shoald did not open $SOCKET; see: journalctl -u shoald"
fi
[ -S "$SOCKET" ] || die "no shoald socket at $SOCKET"

# --- 3. the swarm ------------------------------------------------------------------------------
export SHOAL_HOST="unix://$SOCKET"
if shoal info 2>/dev/null | grep -q '^Swarm: active'; then
  say "already in the swarm"
elif [ "$FIRST" = 1 ]; then
  say "swarm init --advertise-addr $ADDRESS"
  shoal swarm init --advertise-addr "$ADDRESS"
else
  token_file="$TOKENS/$ROLE"
  say "waiting for $token_file from the first manager"
  for _ in $(seq 1 1800); do   # the first manager may still be installing (all VMs provision at once)
    [ -s "$token_file" ] && break
    sleep 1
  done
  [ -s "$token_file" ] || die "no join token at $token_file after 30 minutes (is the first manager up?)"
  say "swarm join as $ROLE via $JOIN:2377"
  shoal swarm join --token "$(cat "$token_file")" --advertise-addr "$ADDRESS" "$JOIN:2377"
fi
if [ "$FIRST" = 1 ]; then
  # Refresh the shared tokens on every run (they may have been rotated).
  mkdir -p -m 0700 "$TOKENS"
  for kind in worker manager; do
    shoal swarm join-token -q "$kind" >"$TOKENS/$kind.tmp"
    mv "$TOKENS/$kind.tmp" "$TOKENS/$kind"
  done
fi
say "done: $(hostname) is a $ROLE at $ADDRESS"
