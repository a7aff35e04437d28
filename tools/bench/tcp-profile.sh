#!/bin/bash
# tcp-profile.sh: one TCP stream (iperf3) between two hosts through one switch, optionally profiled
# with perf on every CPU: which threads and kernel paths the CPU time goes to.
#
#   [SWITCH=userswitch|router|bridge] [TX=off|on] [B=.build/release] [SECS=4] [PERF=1]
#   [SORT=comm,symbol] [REPORT="--no-children"] [TOP=40] [DAEMON_ENV="VAR=VALUE ..."]
#   tools/bench/tcp-profile.sh
#
# Two hosts in namespaces (lab-hosts.sh), 10.77.0.1 and .2, `ethtool -K eth0 tx $TX` on both,
# on userswitchd (started with DAEMON_ENV in its environment) or a Linux bridge; SWITCH=router puts
# host 1 on a routed port of a userswitch router and host 2 on its uplink (as bench.py's tcp_routed). Prints the
# stream's Gbit/s and retransmissions, with PERF=1 the top of `perf report --sort $SORT`, and
# userswitch's port counters. Everything it creates is removed on exit (the daemon by its pid).
#   PERF=1 SORT=comm                               CPU time per command (userswitchd, iperf3, idle)
#   PERF=1 SORT=symbol REPORT="--children --comm userswitchd"   where the daemon's time goes
#   B=DIR of another build (e.g. one whose TX kicks are all inline) compares designs
set -u
SWITCH=${SWITCH:-userswitch}; B=${B:-.build/release}; SECS=${SECS:-4}; TX=${TX:-off}
P=tp$$; W=$(mktemp -d /tmp/usw-tcpprof.XXXXXX); D=; C=
cleanup() { remove_lab "$P" 2 "$D" "$W"; }
trap cleanup EXIT INT TERM
. "$(dirname "$0")/lab-hosts.sh"
add_hosts "$P" 2
for i in 1 2; do
  ip netns exec ${P}h$i ip addr add 10.77.0.$i/24 dev eth0
  ip netns exec ${P}h$i ethtool -K eth0 tx "$TX" >/dev/null 2>&1
done
if [ "$SWITCH" = bridge ]; then
  ip link add ${P}br type bridge && ip link set ${P}br up
  for i in 1 2; do ip link set ${P}s$i master ${P}br; done
elif [ "$SWITCH" = router ]; then
  env ${DAEMON_ENV:-} "$B/userswitchd" --socket "$W/ctl.sock" --config "$W/config.json" ${DAEMON_ARGS:-} 2> "$W/userswitchd.log" & D=$!
  sleep 0.5
  C="$B/userswitchctl --socket $W/ctl.sock"
  $C add-router rt0 uplink=${P}s2 address=10.77.0.254/24 || exit 1
  $C add-port rt0 ${P}s1 ip=10.77.0.1 mac="$(ip netns exec ${P}h1 cat /sys/class/net/eth0/address)" || exit 1
  ip netns exec ${P}h1 ping -c 2 -i 0.2 -W 1 10.77.0.2 >/dev/null
else
  start_userswitch "$P" 2 "$B" "$W" env ${DAEMON_ENV:-} || exit 1
fi
ip netns exec ${P}h2 iperf3 -s -1 -D -I "$W/server.pid" >/dev/null; sleep 0.3
ip netns exec ${P}h1 iperf3 -c 10.77.0.2 -t $((SECS + 3)) -J > "$W/client.json" & I=$!
sleep 1.5
[ -n "${PERF:-}" ] && perf record -q -a -g -o "$W/perf.data" -- sleep "$SECS" 2>/dev/null
wait $I
python3 -c "import json; d=json.load(open('$W/client.json')); e=d['end']
print('$SWITCH, tx $TX: %.2f Gbit/s, %d retransmissions' % (e['sum_received']['bits_per_second']/1e9, e['sum_sent'].get('retransmits', 0)))"
if [ -n "${PERF:-}" ]; then
  perf report -i "$W/perf.data" ${REPORT:---no-children} --sort "${SORT:-comm,symbol}" --stdio 2>/dev/null \
    | grep -E '^ +[0-9]' | head -"${TOP:-40}" | cut -c1-140
fi
[ -n "$C" ] && $C stats 2>&1 | head -20
exit 0
