#!/usr/bin/env bash
# userswitch benchmark harness entry point (`make bench`, `make bench QUICK=1`).
#
# Installs what the measurements need from Debian (Open vSwitch, trafgen, iperf3, matplotlib for
# the chart), then runs tools/bench/bench.py, which builds the namespace lab, measures userswitch,
# the Linux bridge and Open vSwitch's userspace datapath in one run, alternating, and writes
# tools/bench/results/bench-{quick,full}.{md,json,png}. Everything it creates (namespaces, veths,
# daemons) is removed when it ends, also on Ctrl-C.
#
#   tools/bench/run.sh [--quick] [bench.py options...]      (run as root)
#   USERSWITCH_BIN=DIR   where userswitchd/userswitchctl are (default: the release build dir)
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ "$(id -u)" -ne 0 ]; then
  echo "tools/bench/run.sh: run as root (network namespaces, packet sockets)" >&2
  exit 1
fi

PACKAGES="openvswitch-switch netsniff-ng iperf3 ethtool iproute2 iputils-ping python3 python3-matplotlib"
missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "bench: installing:$missing"
  # Installing openvswitch-switch would start the system's Open vSwitch in the root namespace;
  # the harness starts its own, in the lab. Keep the package's service from starting (policy-rc.d
  # exit 101 = "action forbidden"), unless the machine already has a policy of its own.
  policy_made=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    policy_made=1
  fi
  trap '[ -n "$policy_made" ] && rm -f /usr/sbin/policy-rc.d' EXIT
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $missing
  [ -n "$policy_made" ] && rm -f /usr/sbin/policy-rc.d
  policy_made=""
fi

BIN="${USERSWITCH_BIN:-}"
if [ -z "$BIN" ]; then
  export PATH="/opt/swift/usr/bin:$PATH"
  BIN="$(swift build -c release --show-bin-path 2>/dev/null || echo .build/release)"
fi
# /usr/bin/python3: Debian's, which has python3-matplotlib (a pyenv or venv python may not).
exec /usr/bin/python3 tools/bench/bench.py --userswitch-bin "$BIN" "$@"
