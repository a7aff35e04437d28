# lab-hosts.sh: sourced by the one-question scripts here (learning-trial.sh, sink-profile.sh,
# syscalls.sh, tcp-profile.sh).
# add_hosts PREFIX N: hosts PREFIXh1..N in namespaces, each wired by a veth pair to the root
# namespace (PREFIXsI there, eth0 with MAC 02:00:00:00:00:0I in the host), up, IPv6 off so that
# router solicitations and MLD do not add frames to what is counted. The caller removes them.
add_hosts() {
  local p=$1 n=$2 i
  for i in $(seq 1 "$n"); do
    ip netns add ${p}h$i
    ip netns exec ${p}h$i sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    ip link add ${p}s$i type veth peer name eth0 netns ${p}h$i address 02:00:00:00:00:0$i
    ip netns exec ${p}h$i ip link set eth0 up
    echo 1 > /proc/sys/net/ipv6/conf/${p}s$i/disable_ipv6
    ip link set ${p}s$i up
  done
}

# remove_lab PREFIX N DAEMON_PID WORKDIR: what a script's exit trap removes. The daemon is stopped
# by its pid (none if empty), then the hosts, their switch-side links and a bridge PREFIXbr.
remove_lab() {
  local p=$1 n=$2 d=$3 w=$4 i
  [ -n "$d" ] && kill "$d" 2>/dev/null && wait "$d" 2>/dev/null
  for i in $(seq 1 "$n"); do ip netns del ${p}h$i 2>/dev/null; ip link del ${p}s$i 2>/dev/null; done
  ip link del ${p}br 2>/dev/null
  rm -rf "$w"
}

# start_userswitch PREFIX N BIN WORKDIR [COMMAND...]: userswitchd from BIN, started through COMMAND
# if given (`env VAR=VALUE`, `taskset -c 1`), with its socket, saved configuration and log in
# WORKDIR, extra userswitchd options from DAEMON_ARGS (`--spin-us 0`), and bridge br0 with ports
# PREFIXs1..N. Sets D (its pid, for remove_lab) and C (the userswitchctl command for it). Fails if
# the bridge or a port cannot be added.
start_userswitch() {
  local p=$1 n=$2 b=$3 w=$4 i; shift 4
  "$@" "$b/userswitchd" --socket "$w/ctl.sock" --config "$w/config.json" ${DAEMON_ARGS:-} 2> "$w/userswitchd.log" & D=$!
  sleep 0.5
  C="$b/userswitchctl --socket $w/ctl.sock"
  $C add-br br0 || return 1
  for i in $(seq 1 "$n"); do $C add-port br0 ${p}s$i || return 1; done
}

# The tester-port sink: a MAC (SINK_MAC) the switch learns on host 2's port but host 2 does not
# own, so host 2's stack drops frames to it at once. learn_sink PREFIX WORKDIR [COMMAND...]: host 2
# sends 3 broadcast frames from it (trafgen through COMMAND, e.g. `taskset -c 0`). blast_sink
# PREFIX WORKDIR [COMMAND...]: host 1 sends 60-byte frames to it without end (start_blast).
SINK_MAC=02:aa:00:00:00:02
learn_sink() {
  local p=$1 w=$2; shift 2
  echo "{ eth(da=ff:ff:ff:ff:ff:ff, sa=$SINK_MAC, type=0x88b5), fill(0, 46) }" > "$w/learn.cfg"
  ip netns exec ${p}h2 "$@" trafgen -o eth0 -P 1 -Q -C --no-sock-mem -i "$w/learn.cfg" -n 3 >/dev/null 2>&1
  sleep 0.3
}
blast_sink() {
  local p=$1 w=$2; shift 2
  echo "{ eth(da=$SINK_MAC, sa=02:00:00:00:00:01, type=0x88b5), fill(0, 46) }" > "$w/blast.cfg"
  start_blast ${p}h1 "$@" trafgen -o eth0 -P 1 -Q -C --no-sock-mem -i "$w/blast.cfg"
}

# start_blast NAMESPACE COMMAND...: COMMAND (trafgen, iperf3) in NAMESPACE, in the background, in a
# process group of its own (setsid); BLAST_PID is its pid and its group. stop_blast stops the
# group: trafgen forks its worker, a signal to the parent alone leaves the worker sending, and a
# background job of a script ignores SIGINT, so the group gets SIGINT, then SIGKILL if it lingers.
start_blast() {
  local ns=$1; shift
  setsid ip netns exec "$ns" "$@" >/dev/null 2>&1 & BLAST_PID=$!
}
stop_blast() {
  [ -n "${BLAST_PID:-}" ] || return 0
  kill -INT -- -"$BLAST_PID" 2>/dev/null
  for _ in $(seq 30); do kill -0 "$BLAST_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- -"$BLAST_PID" 2>/dev/null
  wait "$BLAST_PID" 2>/dev/null
  BLAST_PID=
}
