#!/usr/bin/env bash
# Provision one Shoal host on Debian 12 (run as root; Vagrant runs it on every VM).
#
#   provision.sh --role manager|worker --address IP --join MANAGER1_IP [--first] \
#                [--source DIR | --repo GIT_URL] [--tokens DIR] [--log-level LEVEL]
#
# 1. puts the project in /opt/shoal (copied from --source, default /vagrant, or cloned from --repo)
#    and runs `make install` there (Debian packages + /opt/shoal/.venv);
# 2. installs and starts the systemd units shoal-runtimed and shoald (deploy/systemd/);
# 3. forms the swarm: the --first host runs `shoal swarm init` and writes the join tokens to the
#    shared --tokens directory (default /vagrant/deploy/.tokens); every other host waits for the
#    token of its role there and runs `shoal swarm join`.
# Running it again is safe: the copy is refreshed, `make install` is idempotent, and a host that is
# already in the swarm does not init or join again.
set -euo pipefail

ROLE="" ADDRESS="" JOIN="" FIRST=0 SOURCE=/vagrant REPO="" TOKENS="" LOG_LEVEL=info
PREFIX=/opt/shoal
SOCKET=/run/shoal/shoal.sock
JOINED_MARK=/var/lib/shoal/joined

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
say "make install"
make -C "$PREFIX" install
for program in shoal shoald shoal-runtimed shoal-lab; do
  ln -sf "$PREFIX/.venv/bin/$program" "/usr/local/bin/$program"
done

# --- 2. the daemons ----------------------------------------------------------------------------
cat >/etc/default/shoal <<EOF
# Written by deploy/provision.sh; read by shoald.service and shoal-runtimed.service.
SHOAL_ADVERTISE_ADDR=$ADDRESS
SHOAL_METRICS_ADDR=$ADDRESS:9323
SHOAL_LOG_LEVEL=$LOG_LEVEL
EOF
install -m 0644 "$PREFIX/deploy/systemd/shoal-runtimed.service" "$PREFIX/deploy/systemd/shoald.service" \
        /etc/systemd/system/
systemctl daemon-reload
if "$PREFIX/.venv/bin/python" -c 'import agent_runtime.server' 2>/dev/null; then
  systemctl enable -q shoal-runtimed.service
  systemctl restart shoal-runtimed.service
else
  say "agent_runtime.server is not in this version: shoal-runtimed not started"
fi
systemctl enable -q shoald.service
systemctl restart shoald.service
for _ in $(seq 1 120); do
  [ -S "$SOCKET" ] && break
  sleep 0.5
done
[ -S "$SOCKET" ] || die "shoald did not open $SOCKET; see: journalctl -u shoald"

# --- 3. the swarm ------------------------------------------------------------------------------
export SHOAL_HOST="unix://$SOCKET"
if [ -e "$JOINED_MARK" ]; then
  say "already in the swarm"
elif [ "$FIRST" = 1 ]; then
  say "swarm init --advertise-addr $ADDRESS"
  shoal swarm init --advertise-addr "$ADDRESS"
  touch "$JOINED_MARK"
else
  token_file="$TOKENS/$ROLE"
  say "waiting for $token_file from the first manager"
  for _ in $(seq 1 600); do
    [ -s "$token_file" ] && break
    sleep 1
  done
  [ -s "$token_file" ] || die "no join token at $token_file after 10 minutes (is the first manager up?)"
  say "swarm join as $ROLE via $JOIN:2377"
  shoal swarm join --token "$(cat "$token_file")" --advertise-addr "$ADDRESS" "$JOIN:2377"
  touch "$JOINED_MARK"
fi
if [ "$FIRST" = 1 ]; then
  # Refresh the shared tokens on every run (they may have been rotated).
  mkdir -p "$TOKENS"
  for kind in worker manager; do
    shoal swarm join-token -q "$kind" >"$TOKENS/$kind.tmp"
    mv "$TOKENS/$kind.tmp" "$TOKENS/$kind"
  done
fi
say "done: $(hostname) is a $ROLE at $ADDRESS"
