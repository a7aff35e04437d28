#!/usr/bin/env bash
# userswitch demo lab: guests in network namespaces wired to userswitchd by veth pairs.
#
#   h1 10.10.0.1 ─┐ access VLAN 10
#   h2 10.10.0.2 ─┤ access VLAN 10
#   h3 10.10.0.3 ─┤ access VLAN 20           userswitchd (root namespace)
#   h4 10.10.0.4 ─┤ access VLAN 20 (attached with the Xen spec usd-br0.20)
#   rt (no IP)   ─┘ trunk, VLANs 10 and 20 (802.1Q tagged)
#
#   lan 10.30.0.7 ── uplink ── router usd-rt0 (10.30.0.1) ── routed port ── g1 10.30.0.5
#
# The second part is routed mode (Xen's vif-route): g1 has an address in the LAN's prefix and the
# router as its gateway; the router proxies ARP for it on the uplink, so lan reaches it as if it
# were on the LAN.
# All four guests share one IP subnet on purpose: h1 cannot reach h3 only because the switch keeps
# VLAN 10 and VLAN 20 apart. The trunk host cannot use VLAN subinterfaces (this kernel has no 8021q
# module), so the demo shows the trunk with tcpdump -e (the 802.1Q tags of the flooded ARP
# requests) and with tagged ARP requests that scapy crafts on the trunk.
#
# The switch side of each veth stays in the root namespace, where the daemon runs; every name the
# demo creates starts with "usd-", so it never touches the host's own interfaces. Everything is
# removed on exit, also on Ctrl-C or an error. Run as root (`make demo` does the rest).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export PATH="/opt/swift/usr/bin:$PATH"
BIN=${USERSWITCH_BIN:-}
if [[ -z "$BIN" ]]; then
  BIN=$(cd "$REPO" && swift build -c release --show-bin-path 2>/dev/null || echo "$REPO/.build/release")
fi
USERSWITCHD="$BIN/userswitchd"
USERSWITCHCTL="$BIN/userswitchctl"
PY=/usr/bin/python3

BR=usd-br0
RT=usd-rt0
HOSTS=(usd-h1 usd-h2 usd-h3 usd-h4 usd-rt usd-lan usd-g1)
declare -A IP=([usd-h1]=10.10.0.1 [usd-h2]=10.10.0.2 [usd-h3]=10.10.0.3 [usd-h4]=10.10.0.4
               [usd-lan]=10.30.0.7 [usd-g1]=10.30.0.5)
declare -A MAC=([usd-h1]=02:00:00:00:10:01 [usd-h2]=02:00:00:00:10:02 [usd-h3]=02:00:00:00:20:03
                [usd-h4]=02:00:00:00:20:04 [usd-rt]=02:00:00:00:99:01 [usd-lan]=02:00:00:00:30:07
                [usd-g1]=02:00:00:00:30:05)

bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
say() { printf '%s\n' "$*"; }
FAILURES=0
ok() { printf '  \033[32mok\033[0m   %s\n' "$*"; }
bad() { printf '  \033[31mFAIL\033[0m %s\n' "$*"; FAILURES=$((FAILURES + 1)); }

[[ $(id -u) -eq 0 ]] || { echo "demo.sh: run as root (it creates network namespaces)" >&2; exit 1; }
for b in "$USERSWITCHD" "$USERSWITCHCTL"; do
  [[ -x "$b" ]] || { echo "demo.sh: $b not built; run 'make build' first" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/usd-demo.XXXXXX)
export USERSWITCH_SOCKET="$WORK/userswitchd.sock"
# The demo's switch keeps its configuration in the lab's own directory, never the host's
# /var/lib/userswitch/config.json: each run starts from an empty switch.
export USERSWITCH_CONFIG="$WORK/config.json"
DAEMON_PID=""
TCPDUMP_PID=""

# Removes only what this demo creates (namespaces usd-*, root-side veths usd-*), by name and pid.
teardown_lab() {
  local ns
  for ns in "${HOSTS[@]}"; do
    ip netns del "$ns" 2>/dev/null || true
    ip link del "$ns" 2>/dev/null || true
  done
}

# Background jobs of a script ignore SIGINT, so tcpdump is stopped with SIGTERM (it still flushes).
stop_tcpdump() {
  [[ -n "$TCPDUMP_PID" ]] || return 0
  kill -TERM "$TCPDUMP_PID" 2>/dev/null || true
  for _ in $(seq 30); do kill -0 "$TCPDUMP_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$TCPDUMP_PID" 2>/dev/null || true
  wait "$TCPDUMP_PID" 2>/dev/null || true
  TCPDUMP_PID=""
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  bold "tearing the lab down"
  stop_tcpdump
  if [[ -n "$DAEMON_PID" ]] && kill -0 "$DAEMON_PID" 2>/dev/null; then
    kill -TERM "$DAEMON_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$DAEMON_PID" 2>/dev/null; then
      say "userswitchd did not stop on SIGTERM; killing it"
      kill -KILL "$DAEMON_PID" 2>/dev/null || true
    fi
    wait "$DAEMON_PID" 2>/dev/null || true
    say "userswitchd (pid $DAEMON_PID) stopped"
  fi
  teardown_lab
  rm -rf "$WORK"
  say "namespaces and veths removed"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ctl() { "$USERSWITCHCTL" "$@"; }
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

bold "building the lab (namespaces ${HOSTS[*]})"
teardown_lab # leftovers of an interrupted run
for ns in "${HOSTS[@]}"; do
  ip netns add "$ns"
  # The guest end is created directly inside the namespace, named eth0 there.
  ip link add "$ns" type veth peer name eth0 netns "$ns"
  # Keep the host's IPv6 stack off the switch-side ends, and every guest quiet (no ND/MLD noise).
  echo 1 > "/proc/sys/net/ipv6/conf/$ns/disable_ipv6"
  in_ns "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  in_ns "$ns" ip link set lo up
  in_ns "$ns" ip link set eth0 address "${MAC[$ns]}"
  if [[ -n "${IP[$ns]:-}" ]]; then in_ns "$ns" ip addr add "${IP[$ns]}/24" dev eth0; fi
  in_ns "$ns" ip link set eth0 up
  ip link set "$ns" up
  say "  $ns: eth0 ${MAC[$ns]} ${IP[$ns]:-(trunk, no address)}  <->  $ns in the root namespace"
done

bold "starting userswitchd (socket $USERSWITCH_SOCKET)"
"$USERSWITCHD" --socket "$USERSWITCH_SOCKET" --log-level info > "$WORK/userswitchd.log" 2>&1 &
DAEMON_PID=$!
for _ in $(seq 100); do
  if ctl show > /dev/null 2>&1; then break; fi
  kill -0 "$DAEMON_PID" 2>/dev/null || { cat "$WORK/userswitchd.log" >&2; echo "userswitchd exited" >&2; exit 1; }
  sleep 0.1
done
ctl show > /dev/null || { cat "$WORK/userswitchd.log" >&2; echo "userswitchd does not answer" >&2; exit 1; }
say "userswitchd running, pid $DAEMON_PID"

bold "configuring the switch"
run_ctl() { say "  # userswitchctl $*"; ctl "$@"; }
run_ctl add-br "$BR"
run_ctl add-port "$BR" usd-h1 tag=10
run_ctl add-port "$BR" usd-h2 tag=10
run_ctl add-port "$BR" usd-h3 tag=20
run_ctl add-port "$BR.20" usd-h4           # Xen / Open vSwitch bridge spec: access port in VLAN 20
run_ctl add-port "$BR" usd-rt trunks=10,20

bold "capturing on the trunk host (tcpdump -e in usd-rt)"
# Started directly (not through the in_ns function, which would fork a subshell) so that $! is
# tcpdump itself: `ip netns exec` execs the command in place.
ip netns exec usd-rt tcpdump -l -n -e -i eth0 > "$WORK/trunk.txt" 2> "$WORK/tcpdump.err" &
TCPDUMP_PID=$!
for _ in $(seq 50); do grep -q 'listening on' "$WORK/tcpdump.err" 2>/dev/null && break; sleep 0.1; done

# ping with a few tries: the first frames also teach the switch where the hosts are.
can_ping() {
  local from=$1 to=$2
  for _ in 1 2 3; do
    in_ns "$from" ping -c 2 -i 0.2 -W 1 -q "${IP[$to]}" > /dev/null 2>&1 && return 0
  done
  return 1
}

bold "pings through the switch"
for pair in "usd-h1 usd-h2" "usd-h2 usd-h1" "usd-h3 usd-h4" "usd-h4 usd-h3"; do
  set -- $pair
  if can_ping "$1" "$2"; then ok "$1 -> $2 (${IP[$2]}): replies (same VLAN)"; else bad "$1 -> $2: no reply"; fi
done
for pair in "usd-h1 usd-h3" "usd-h4 usd-h2"; do
  set -- $pair
  if in_ns "$1" ping -c 2 -i 0.2 -W 1 -q "${IP[$2]}" > /dev/null 2>&1; then
    bad "$1 -> $2 got replies across VLANs"
  else
    ok "$1 -> $2 (${IP[$2]}): no reply (different VLAN, isolated)"
  fi
done
say "  # ip netns exec usd-h1 ping -c 3 ${IP[usd-h2]}"
in_ns usd-h1 ping -c 3 -i 0.2 -W 1 "${IP[usd-h2]}" | sed 's/^/    /' || true

bold "tagged frames from the trunk (scapy in usd-rt)"
# An ARP request for h3's address, tagged VLAN 10 then VLAN 20: only the VLAN 20 one reaches h3
# (untagged, on its access port), and h3's reply comes back to the trunk tagged VLAN 20.
if in_ns usd-rt "$PY" - "${MAC[usd-rt]}" "${IP[usd-h3]}" <<'EOF'
import sys, time
from scapy.all import Ether, Dot1Q, ARP, sendp
mac, target = sys.argv[1], sys.argv[2]
for vlan in (10, 20):
    sendp(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / Dot1Q(vlan=vlan) /
          ARP(op=1, hwsrc=mac, psrc="10.10.0.254", pdst=target), iface="eth0", verbose=False)
    time.sleep(0.5)
EOF
then say "  sent: who-has ${IP[usd-h3]} tagged VLAN 10, then tagged VLAN 20"
else bad "scapy could not send (is python3-scapy installed?)"; fi
sleep 1
stop_tcpdump

bold "what the trunk saw (tcpdump -e -i eth0 in usd-rt)"
grep -E 'vlan (10|20)' "$WORK/trunk.txt" | head -20 | sed 's/^/    /' || true
if grep -q 'vlan 10.*Request who-has 10.10.0.2 tell 10.10.0.1' "$WORK/trunk.txt"; then
  ok "VLAN 10 broadcast (h1's ARP request) arrived on the trunk tagged vlan 10"
else bad "no vlan 10 tagged ARP request on the trunk"; fi
if grep -q 'vlan 20.*Request who-has 10.10.0.[34] tell 10.10.0.[34]' "$WORK/trunk.txt"; then
  ok "VLAN 20 broadcast (h3/h4's ARP request) arrived on the trunk tagged vlan 20"
else bad "no vlan 20 tagged ARP request on the trunk"; fi
if grep -q 'vlan 20.*Reply 10.10.0.3 is-at' "$WORK/trunk.txt"; then
  ok "h3 answered the VLAN 20 tagged request; its reply came back tagged vlan 20"
else bad "no tagged vlan 20 ARP reply from h3 on the trunk"; fi
if grep -q 'vlan 10.*Reply 10.10.0.3 is-at' "$WORK/trunk.txt"; then
  bad "h3 answered a VLAN 10 request: VLANs leak"
else ok "the VLAN 10 tagged request for h3 got no answer (h3 is in VLAN 20)"; fi

bold "routed mode: a router between the LAN (usd-lan) and a routed guest (usd-g1)"
in_ns usd-g1 ip route add default via 10.30.0.1
run_ctl add-router "$RT" uplink=usd-lan address=10.30.0.1/24
run_ctl add-port "$RT" usd-g1 ip=10.30.0.5 "mac=${MAC[usd-g1]}"
if can_ping usd-g1 usd-lan; then ok "usd-g1 -> usd-lan (10.30.0.7): replies, routed"; else bad "usd-g1 -> usd-lan: no reply"; fi
if can_ping usd-lan usd-g1; then ok "usd-lan -> usd-g1 (10.30.0.5): replies, through proxy ARP"; else bad "usd-lan -> usd-g1: no reply"; fi
rt_mac=$(ctl show --json | $PY -c 'import json, sys; print(next(x["mac"] for x in json.load(sys.stdin) if x.get("mode") == "route"))')
if in_ns usd-lan ip neigh show 10.30.0.5 | grep -q "$rt_mac"; then
  ok "usd-lan holds 10.30.0.5 at the router's MAC $rt_mac (proxy ARP)"
else bad "usd-lan's neighbour entry for 10.30.0.5 is not the router's MAC"; fi
ttl_out=$(in_ns usd-g1 ping -c 1 -W 2 -t 1 10.30.0.7 2>&1 || true)  # no echo reply: ping exits 1
if grep -q "From 10.30.0.1.*exceeded" <<< "$ttl_out"; then
  ok "ping -t 1 from usd-g1: time exceeded from the router (10.30.0.1)"
else bad "no time exceeded from the router for ping -t 1"; fi
bold "userswitchctl routes $RT"
ctl routes "$RT" | sed 's/^/    /'
bold "userswitchctl neigh $RT"
ctl neigh "$RT" | sed 's/^/    /'

bold "userswitchctl show"
ctl show | sed 's/^/    /'
bold "userswitchctl fdb $BR"
ctl fdb "$BR" | sed 's/^/    /'
bold "userswitchctl stats --bridge $BR"
ctl stats --bridge "$BR" | sed 's/^/    /'

if [[ $FAILURES -gt 0 ]]; then
  bold "$FAILURES check(s) failed; userswitchd log:"
  tail -40 "$WORK/userswitchd.log" | sed 's/^/    /'
  exit 1
fi
bold "all checks passed"
