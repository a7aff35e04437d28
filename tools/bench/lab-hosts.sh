# lab-hosts.sh: sourced by the one-question scripts here (learning-trial.sh, sink-profile.sh).
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
