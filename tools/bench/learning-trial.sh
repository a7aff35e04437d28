#!/bin/bash
# learning-trial.sh: one RFC 2889-style learning trial on userswitch alone, small enough to rerun
# by hand while investigating (the harness's rfc2889 workload does the same across switches).
#
#   B=.build/release N=4096 R=100000 [PIN=1] [DENV="VAR=VALUE ..."] [DAEMON_ARGS="--spin-us 0"] tools/bench/learning-trial.sh
#
# Three hosts in namespaces on one bridge. Phase 1: h1 sends N frames from N new source MACs to a
# MAC learned on h2's port, at R frames/s (trafgen's rate-limited mode). Phase 2: h2 sends one frame
# to each of those MACs at 50k frames/s. Printed: what the kernel handed the switch's ports, what
# the switch received and forwarded, and what h1 and h3 (a bystander that sees floods) received.
# PIN=1 runs userswitchd on CPU 1 and trafgen on CPU 0. Everything is removed on exit.
set -u
B=${B:-.build/release}; N=${N:-4096}; R=${R:-100000}
P=lt$$; W=$(mktemp -d /tmp/usw-learning.XXXXXX); D=
pin_d=""; pin_t=""
[ "${PIN:-0}" = 1 ] && { pin_d="taskset -c 1"; pin_t="taskset -c 0"; }
cleanup() { remove_lab "$P" 3 "$D" "$W"; }
trap cleanup EXIT INT TERM
. "$(dirname "$0")/lab-hosts.sh"
add_hosts "$P" 3
start_userswitch "$P" 3 "$B" "$W" env ${DENV:-} $pin_d || exit 1
rx() { ip netns exec ${P}h$1 cat /sys/class/net/eth0/statistics/rx_packets; }
gen() { h=$1; shift; ip netns exec ${P}h$h $pin_t trafgen -o eth0 -P 1 -Q -C --no-sock-mem "$@" >/dev/null 2>&1; }
learn_sink "$P" "$W" $pin_t
echo "{ eth(da=$SINK_MAC, sa=02:10:00:00:00:00, sa=dinc(0,$((N-1))), type=0x88b5), fill(0, 46) }" > "$W/p1.cfg"
a=$(rx 2); gen 1 -i "$W/p1.cfg" -n "$N" -b "${R}pps"; sleep 0.5
echo "phase 1: kernel gave port s1 $(cat /sys/class/net/${P}s1/statistics/rx_packets) frames; h2 received $(( $(rx 2) - a )) of $N"
echo "{ eth(da=02:10:00:00:00:00, da=dinc(0,$((N-1))), sa=$SINK_MAC, type=0x88b5), fill(0, 46) }" > "$W/p2.cfg"
a1=$(rx 1); a3=$(rx 3); gen 2 -i "$W/p2.cfg" -n "$N" -b 50000pps; sleep 0.5
echo "phase 2: h1 received $(( $(rx 1) - a1 )) of $N; h3 (floods) $(( $(rx 3) - a3 ))"
$C stats --bridge br0
