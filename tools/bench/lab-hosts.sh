# lab-hosts.sh: sourced by the one-question scripts here (learning-trial.sh, sink-profile.sh,
# tcp-profile.sh).
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

# start_blast NAMESPACE [taskset -c CPU] TRAFGEN_ARGS...: trafgen in NAMESPACE, in the background,
# in a process group of its own (setsid); BLAST_PID is its pid and its group. stop_blast stops the
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
