#!/bin/bash
# sink-profile.sh: where the generator's CPU goes in the 64-byte tester-port sink test, on
# userswitch or the Linux bridge, profiled with perf (software clock, call graphs).
#
#   SWITCH=userswitch|bridge [B=.build/release] [PROFILE_SECONDS=3] [PIN=0] tools/bench/sink-profile.sh
#
# Two hosts in namespaces on one switch. h2's port learns a sink MAC that h2 does not own; h1
# blasts 60-byte frames to it with trafgen pinned to CPU 0, while the switch (userswitchd pinned
# to CPU 1 unless PIN=0, or the Linux bridge, which forwards in the sender's softirq) runs. perf records CPU 0
# for PROFILE_SECONDS and prints the top symbols (self time) and the frames/s h2's interface received.
# Everything it creates is removed on exit.
set -u
SWITCH=${SWITCH:-userswitch}; B=${B:-.build/release}; SECS=${PROFILE_SECONDS:-3}
P=sp$$; W=$(mktemp -d /tmp/usw-sinkprof.XXXXXX); D=
cleanup() { stop_blast; remove_lab "$P" 2 "$D" "$W"; }
trap cleanup EXIT INT TERM
. "$(dirname "$0")/lab-hosts.sh"
add_hosts "$P" 2
if [ "$SWITCH" = bridge ]; then
  ip link add ${P}br type bridge && ip link set ${P}br up
  for i in 1 2; do ip link set ${P}s$i master ${P}br; done
else
  pin=""; [ "${PIN:-1}" = 1 ] && pin="taskset -c 1"
  start_userswitch "$P" 2 "$B" "$W" $pin || exit 1
fi
learn_sink "$P" "$W" taskset -c 0
blast_sink "$P" "$W" taskset -c 0
sleep 1
rx() { ip netns exec ${P}h2 cat /sys/class/net/eth0/statistics/rx_packets; }
a=$(rx 2)
perf record -q -C 0 -g -o "$W/perf.data" -- sleep "$SECS" 2>/dev/null
b=$(rx 2)
echo "$SWITCH: h2 received $(( (b - a) / SECS )) frames/s while profiled"
perf report -i "$W/perf.data" --no-children --sort symbol --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -25
