#!/bin/bash
# syscalls.sh: userswitchd's system calls per frame it forwards, counted by the kernel's syscall
# tracepoints (perf stat on the daemon's process, every thread), for the 64-byte tester-port sink
# and for one TCP stream.
#
#   [WORKLOAD=sink|tcp] [TX=off|on] [B=.build/release] [SECS=4] [DAEMON_ENV="VAR=VALUE ..."]
#   tools/bench/syscalls.sh
#
# Two hosts in namespaces (lab-hosts.sh) on userswitchd. sink: h1 blasts 60-byte frames with
# trafgen to a MAC learned on h2's port that h2 does not own. tcp: one iperf3 stream h1 -> h2 with
# `ethtool -K eth0 tx $TX` on both. While the traffic runs, `perf stat` counts the daemon's
# syscalls for SECS seconds, in total and for the calls the dataplane makes (sendto: a TX kick;
# sched_yield; poll/ppoll: sleeping; read/write: the wake-up eventfds; futex), and the frames
# the two hosts' interfaces received in the same window: everything the switch forwarded, in both
# directions (TCP's ACKs too; a GSO super-frame counts once). Unlike strace, the tracepoints do
# not stop the daemon at each call, so the batching it shows is the batching it does. Everything it creates is removed on exit (the daemon by its pid).
set -u
WORKLOAD=${WORKLOAD:-sink}; B=${B:-.build/release}; SECS=${SECS:-4}; TX=${TX:-off}
P=sc$$; W=$(mktemp -d /tmp/usw-syscalls.XXXXXX); D=
cleanup() { stop_blast; remove_lab "$P" 2 "$D" "$W"; }
trap cleanup EXIT INT TERM
. "$(dirname "$0")/lab-hosts.sh"
add_hosts "$P" 2
start_userswitch "$P" 2 "$B" "$W" env ${DAEMON_ENV:-} || exit 1

if [ "$WORKLOAD" = tcp ]; then
  for i in 1 2; do
    ip netns exec ${P}h$i ip addr add 10.77.0.$i/24 dev eth0
    ip netns exec ${P}h$i ethtool -K eth0 tx "$TX" >/dev/null 2>&1
  done
  ip netns exec ${P}h2 iperf3 -s -1 -D -I "$W/server.pid" >/dev/null; sleep 0.3
  start_blast ${P}h1 iperf3 -c 10.77.0.2 -t $((SECS + 3))
  what="TCP, tx $TX"
else
  learn_sink "$P" "$W"
  blast_sink "$P" "$W"
  what="64-byte sink"
fi
sleep 1.5
rx() { echo $(( $(ip netns exec ${P}h1 cat /sys/class/net/eth0/statistics/rx_packets) + \
               $(ip netns exec ${P}h2 cat /sys/class/net/eth0/statistics/rx_packets) )); }
events=raw_syscalls:sys_enter
for c in sendto sched_yield poll ppoll read write futex; do events="$events,syscalls:sys_enter_$c"; done
a=$(rx)
perf stat -x, -e "$events" -p "$D" -o "$W/stat.csv" -- sleep "$SECS" 2>/dev/null
b=$(rx)
frames=$((b - a))
echo "$what: the hosts received $((frames / SECS)) frames/s; userswitchd's syscalls in ${SECS} s:"
awk -F, -v f="$frames" '$1 ~ /^[0-9]+$/ {
  name = $3; sub(/^(raw_)?syscalls:sys_enter_?/, "", name); if (name == "") name = "all"
  printf "  %-12s %10d  %.4f per frame\n", name, $1, (f > 0 ? $1 / f : 0) }' "$W/stat.csv"
exit 0
