#!/usr/bin/python3
"""userswitch benchmark harness: the same lab and the same traffic for every switch, in one run.

Design note.
- Lab: one switch namespace and up to 9 host namespaces, each host wired to the switch namespace
  by a veth pair (host end `eth0`, switch end `sN`). Nothing is created in the root namespace:
  userswitchd, ovsdb-server and ovs-vswitchd run inside the switch namespace (ip netns exec), the
  Linux bridge is created there. The lab is built afresh for every (round, switch) so that no state
  (FDB, offload settings, socket buffers) leaks from one switch to the next.
- Alternation: round r runs every workload on userswitch, then the Linux bridge, then Open vSwitch,
  so slow drifts of the machine (other load, thermal) hit all three alike. Medians over rounds.
- Counting: frames are counted at the hosts' interfaces (rx/tx packets of each host's eth0), which
  is where the issue asks for them, and never inside the switch under test.
- Failure: a workload that errors, times out or moves no traffic is recorded as failed with its
  reason; the table shows "failed", never 0, never a gap.
- Address tables: every switch's FDB is sized for `--fdb-size` addresses (default 1M) where the
  size is configurable (userswitch `add-br --fdb-capacity`, Open vSwitch
  `other_config:mac-table-size`; the Linux bridge has no limit by default), so the RFC 2889
  capacity trials measure the switch, not a default. The memory probe keeps userswitch's default.
- Cleanup: every namespace and process is recorded when created and removed in `Lab.destroy`,
  which also runs on SIGINT/SIGTERM and at exit.
"""

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

PID = os.getpid()
SWITCHES = ["userswitch", "linux-bridge", "ovs-netdev", "userswitch-router", "linux-route"]
LABELS = {"userswitch": "userswitch", "linux-bridge": "Linux bridge", "ovs-netdev": "Open vSwitch (netdev)"}
NET = "10.77.0"  # never 192.0.2.0/24: the host's eth0 lives there


def host_mac(i):
    return f"02:00:00:00:01:{i:02x}"


def sink_mac(i):
    """A MAC learned on host i's port that host i does not own (tester-port sink)."""
    return f"02:00:00:00:5e:{i:02x}"


def run(cmd, check=True, timeout=60, capture=True):
    r = subprocess.run(cmd, shell=isinstance(cmd, str), capture_output=capture, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{cmd if isinstance(cmd, str) else ' '.join(cmd)}: exit {r.returncode}: "
                           f"{(r.stderr or r.stdout or '').strip()[-400:]}")
    return r.stdout if capture else ""


class Failed(Exception):
    pass


class Lab:
    """Namespaces, veths and the processes started in them; all removed by destroy()."""

    def __init__(self, work, nhosts):
        self.work = work
        self.nhosts = nhosts
        self.sw = f"ubsw-{PID}"
        self.hosts = [None] + [f"ubh{i}-{PID}" for i in range(1, nhosts + 1)]
        self.namespaces = []
        self.procs = []  # Popen objects, stopped by pid
        self.pidfiles = []

    def ns(self, name, cmd):
        return ["ip", "netns", "exec", name] + cmd

    def h(self, i, cmd):
        return self.ns(self.hosts[i], cmd)

    def build(self):
        for name in [self.sw] + self.hosts[1:]:
            run(["ip", "netns", "add", name])
            self.namespaces.append(name)
            run(self.ns(name, ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                               "net.ipv6.conf.default.disable_ipv6=1"]))
            run(["ip", "-n", name, "link", "set", "lo", "up"])
        for i in range(1, self.nhosts + 1):
            run(["ip", "link", "add", "name", f"s{i}", "netns", self.sw, "type", "veth",
                 "peer", "name", "eth0", "netns", self.hosts[i]])
            run(["ip", "-n", self.hosts[i], "link", "set", "eth0", "address", host_mac(i)])
            run(["ip", "-n", self.hosts[i], "addr", "add", f"{NET}.{i}/24", "dev", "eth0"])
            run(["ip", "-n", self.hosts[i], "link", "set", "eth0", "up"])
            run(["ip", "-n", self.sw, "link", "set", f"s{i}", "up"])

    def spawn(self, cmd, log=None, env=None):
        out = open(log, "w") if log else subprocess.DEVNULL
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
                             start_new_session=True, env=dict(os.environ, **env) if env else None)
        self.procs.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM, wait=5):
        # Each process leads its own session (start_new_session): signal the whole group, since
        # trafgen forks its workers and a signal to the parent alone leaves them sending.
        try:
            os.killpg(p.pid, sig)
            p.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
        except ProcessLookupError:
            pass
        if p in self.procs:
            self.procs.remove(p)

    def stop_pidfile(self, path):
        try:
            pid = int(open(path).read().strip())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                os.kill(pid, 0)
                time.sleep(0.1)
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def destroy(self):
        for p in list(self.procs):
            self.stop(p, wait=3)
        for path in list(self.pidfiles):
            self.stop_pidfile(path)
        self.pidfiles = []
        for name in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        self.namespaces = []

    def counters(self, hosts):
        """(rx, tx) packets of eth0 in each of `hosts`."""
        out = {}
        for i in hosts:
            j = json.loads(run(["ip", "-n", self.hosts[i], "-j", "-s", "link", "show", "dev", "eth0"]))
            s = j[0]["stats64"]
            out[i] = (s["rx"]["packets"], s["tx"]["packets"])
        return out


# ---------------------------------------------------------------------------------------------
# Switches under test


class Switch:
    kind = "bridge"  # or "router": which workloads apply (ROUTED_WORKLOADS)

    def __init__(self, lab, args):
        self.lab, self.args = lab, args


class LinuxBridge(Switch):
    name = "linux-bridge"
    kind = "bridge"

    def start(self):
        sw = self.lab.sw
        # A bridge on this kernel hands bridged IP and ARP frames to the (empty) iptables,
        # ip6tables and arptables hooks as well (br_netfilter is built in and its call-* switches
        # default to on in every namespace): work a plain bridge does not do, and no rule here
        # needs. Off in the switch namespace, so the bridge is measured at its best; the ebtables
        # workloads hook the bridge itself and do not need it.
        for table in ["iptables", "ip6tables", "arptables"]:
            run(["ip", "netns", "exec", sw, "sh", "-c", f"echo 0 > /proc/sys/net/bridge/bridge-nf-call-{table}"],
                check=False)
        run(["ip", "-n", sw, "link", "add", "br0", "type", "bridge"])
        for i in range(1, self.lab.nhosts + 1):
            run(["ip", "-n", sw, "link", "set", f"s{i}", "master", "br0"])
        run(["ip", "-n", sw, "link", "set", "br0", "up"])

    def stop(self):
        pass  # goes with the namespace

    def rss_kib(self):
        return None


class UserSwitch(Switch):
    name = "userswitch"
    kind = "bridge"
    env = {}
    bindir = None
    daemon_args = []  # extra userswitchd options (a variant's ARGS=)
    fdb_capacity = None  # None: the daemon's default

    def start(self):
        bindir = self.bin = self.bindir or self.args.userswitch_bin
        self.sock = os.path.join(self.lab.work, f"userswitchd-{time.monotonic_ns()}.sock")
        self.log = os.path.join(self.lab.work, "userswitchd.log")
        self.proc = self.lab.spawn(self.lab.ns(self.lab.sw, [os.path.join(bindir, "userswitchd"),
                                                             "--socket", self.sock, "--log-level", "warning"]
                                                            + list(self.daemon_args)),
                                   log=self.log,
                                   # Its own saved configuration in the work directory: the daemon
                                   # restores and saves it, and must not touch the machine's.
                                   env=dict(self.env, USERSWITCH_CONFIG=self.sock + ".config.json"))
        for _ in range(100):
            if self.ctl(["show"], check=False) is not None:
                break
            if self.proc.poll() is not None:
                raise Failed("userswitchd exited: " + open(self.log).read()[-300:])
            time.sleep(0.05)
        self.add_ports()

    def add_ports(self):
        self.ctl(["add-br", "br0"] + (["--fdb-capacity", str(self.fdb_capacity)] if self.fdb_capacity else []))
        for i in range(1, self.lab.nhosts + 1):
            self.ctl(["add-port", "br0", f"s{i}"])

    def ctl(self, words, check=True):
        r = subprocess.run([os.path.join(self.bin, "userswitchctl")] + words, capture_output=True,
                           text=True, timeout=30, env=dict(os.environ, USERSWITCH_SOCKET=self.sock))
        if r.returncode != 0:
            if check:
                raise Failed(f"userswitchctl {' '.join(words)}: {r.stderr.strip()}")
            return None
        return r.stdout

    def stop(self):
        self.lab.stop(self.proc, wait=10)

    def rss_kib(self):
        try:
            for line in open(f"/proc/{self.proc.pid}/status"):
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            return None


class OpenVSwitch(Switch):
    name = "ovs-netdev"
    fdb_capacity = None

    def start(self):
        d = tempfile.mkdtemp(prefix="ovs-", dir=self.lab.work)
        self.dir = d
        env = {"OVS_RUNDIR": d, "OVS_LOGDIR": d, "OVS_DBDIR": d, "OVS_SYSCONFDIR": d, "OVS_PKGDATADIR": "/usr/share/openvswitch"}
        self.env = " ".join(f"{k}={v}" for k, v in env.items())
        db = os.path.join(d, "conf.db")
        self.dbsock = f"unix:{d}/db.sock"
        run(["ovsdb-tool", "create", db, "/usr/share/openvswitch/vswitch.ovsschema"])
        sw = self.lab.sw
        self.lab.pidfiles += [f"{d}/ovs-vswitchd.pid", f"{d}/ovsdb-server.pid"]
        run(f"env {self.env} ip netns exec {sw} ovsdb-server {db} --remote=punix:{d}/db.sock "
            f"--pidfile={d}/ovsdb-server.pid --unixctl={d}/ovsdb-server.ctl --log-file={d}/ovsdb-server.log --detach")
        self.vsctl("--no-wait", "init")
        run(f"env {self.env} ip netns exec {sw} ovs-vswitchd {self.dbsock} --pidfile={d}/ovs-vswitchd.pid "
            f"--unixctl={d}/ovs-vswitchd.ctl --log-file={d}/ovs-vswitchd.log --detach")
        self.vsctl("add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev")
        if self.fdb_capacity:
            self.vsctl("set", "bridge", "br0", f"other_config:mac-table-size={self.fdb_capacity}")
        for i in range(1, self.lab.nhosts + 1):
            self.vsctl("add-port", "br0", f"s{i}")
        run(["ip", "-n", sw, "link", "set", "br0", "up"], check=False)

    def vsctl(self, *words):
        return run(["ip", "netns", "exec", self.lab.sw, "ovs-vsctl", f"--db={self.dbsock}", "--timeout=20"] + list(words))

    def stop(self):
        for f in ["ovs-vswitchd.pid", "ovsdb-server.pid"]:
            self.lab.stop_pidfile(os.path.join(self.dir, f))

    def rss_kib(self):
        return None


# Routed mode (docs/routing.md): host 1 is a guest on a routed port, host 2 a LAN host on the
# uplink, both in NET/24 as behind Xen's vif-route (proxy ARP makes the guest reachable from the
# LAN); the router's own address is NET.254. The kernel reference is set up as network-route and
# vif-route do: ip_forward, the address on the uplink and as /32 on the vif, proxy ARP on both,
# a host route to the guest with metric 2.
class UserSwitchRouter(UserSwitch):
    name = "userswitch-router"
    kind = "router"

    def start(self):
        self.add_bridge = False
        super().start()

    def add_ports(self):
        self.ctl(["add-router", "rt0", "uplink=s2", f"address={NET}.254/24"])
        self.ctl(["add-port", "rt0", "s1", f"ip={NET}.1", f"mac={host_mac(1)}"])

    def router_mac(self):
        return next(x["mac"] for x in json.loads(self.ctl(["show", "--json"])) if x.get("mode") == "route")


class LinuxRoute(Switch):
    name = "linux-route"
    kind = "router"

    def start(self):
        sw = self.lab.sw
        def k(*cmd):
            run(["ip", "netns", "exec", sw] + list(cmd))
        k("sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0")
        k("ip", "addr", "add", f"{NET}.254/24", "dev", "s2")
        k("ip", "addr", "add", f"{NET}.254/32", "dev", "s1")
        for dev in ["s1", "s2"]:
            k("sysctl", "-qw", f"net.ipv4.conf.{dev}.proxy_arp=1")
        k("ip", "route", "add", f"{NET}.1", "dev", "s1", "metric", "2")

    def router_mac(self):
        return run(self.lab.ns(self.lab.sw, ["cat", "/sys/class/net/s1/address"])).strip()

    def stop(self):
        pass  # goes with the namespace

    def rss_kib(self):
        return None


SWITCH_CLASSES = {"userswitch": UserSwitch, "linux-bridge": LinuxBridge, "ovs-netdev": OpenVSwitch,
                  "userswitch-router": UserSwitchRouter, "linux-route": LinuxRoute}
LABELS.update({"userswitch-router": "userswitch router", "linux-route": "Linux routing (vif-route)"})


# ---------------------------------------------------------------------------------------------
# Traffic


def frame_cfg(dst, src, kind="udp", src_ip=1, dst_ip=2, src_inc=None, dst_inc=None):
    """A trafgen config of one 60-byte frame (64 on the wire with the FCS)."""
    sa = f"sa={src}" + (f", sa=dinc(0,{src_inc - 1})" if src_inc else "")
    da = f"da={dst}" + (f", da=dinc(0,{dst_inc - 1})" if dst_inc else "")
    if kind == "udp":
        return (f"{{ eth({da}, {sa}, type=0x0800), ipv4(saddr={NET}.{src_ip}, daddr={NET}.{dst_ip}, ttl=64), "
                f"udp(sport=9, dport=9), fill(0, 18) }}\n")
    return f"{{ eth({da}, {sa}, type=0x88b5), fill(0, 46) }}\n"


class Traffic:
    def __init__(self, lab, args):
        self.lab, self.args = lab, args
        self.n = 0

    def cfg(self, text):
        self.n += 1
        path = os.path.join(self.lab.work, f"t{self.n}.cfg")
        with open(path, "w") as f:
            f.write(text)
        return path

    def trafgen(self, host, cfg, count=None, rate=None):
        cmd = ["trafgen", "-o", "eth0", "-i", cfg, "-P", "1", "-Q", "-C", "--no-sock-mem"]
        if count:
            cmd += ["-n", str(count)]
        if rate:
            cmd += ["-b", f"{rate}pps"]
        return self.lab.h(host, cmd)

    def send_once(self, host, cfg, count, rate=None, timeout=60):
        run(self.trafgen(host, cfg, count, rate), timeout=timeout)

    def learn_sinks(self, hosts):
        """Each host sends 3 broadcast frames from its sink MAC: every switch learns it on that port."""
        for i in hosts:
            self.send_once(i, self.cfg(frame_cfg("ff:ff:ff:ff:ff:ff", sink_mac(i), kind="raw")), 3)
        time.sleep(0.2)

    def blast(self, senders, receivers, duration):
        """Start the configured trafgens, count for `duration` seconds after a warm-up."""
        procs = [self.lab.spawn(cmd) for cmd in senders]
        try:
            time.sleep(0.7)
            for p in procs:
                if p.poll() is not None:
                    raise Failed(f"trafgen exited early ({p.returncode})")
            hosts = sorted(set(receivers) | set(range(1, self.lab.nhosts + 1)))
            c0, t0 = self.lab.counters(hosts), time.monotonic()
            time.sleep(duration)
            c1, t1 = self.lab.counters(hosts), time.monotonic()
        finally:
            for p in procs:
                self.lab.stop(p, sig=signal.SIGINT)
        dt = t1 - t0
        rx = {i: (c1[i][0] - c0[i][0]) / dt for i in hosts}
        tx = {i: (c1[i][1] - c0[i][1]) / dt for i in hosts}
        return rx, tx


def udp64(lab, tr, args, sink):
    if sink:
        tr.learn_sinks([2])
    dst = sink_mac(2) if sink else host_mac(2)
    cfg = tr.cfg(frame_cfg(dst, host_mac(1)))
    rx, tx = tr.blast([tr.trafgen(1, cfg)], [2], args.duration)
    if rx[2] < 1000:
        raise Failed(f"{rx[2]:.0f} frames/s delivered")
    return {"offered_pps": tx[1], "delivered_pps": rx[2]}


# ---------------------------------------------------------------------------------------------
# Generator ceiling: what trafgen can offer towards the sink with no switch at all on host 1's
# switch-side port, and with the cheapest possible userspace reader there (bare-reader.c). A veth
# transmits in the sender's context, so the kernel's side of every delivery to a packet socket
# (the copy into a ring, or queueing an skb for recvmmsg) runs on trafgen's CPU. On a machine
# where that CPU is the bottleneck, no switch that reads with a packet socket can deliver more
# than the bare reader lets trafgen offer; the table puts the switches' figures beside it.

CEILING_REFERENCES = [
    ("no-reader", "nothing reads the port (the kernel drops each frame)"),
    ("ring", "bare reader, TPACKET_V2 RX ring (4096 x 2 KiB)"),
    ("ring-userswitch", "bare reader, the same ring with userswitch's socket setup (vnet header, PACKET_COPY_THRESH)"),
    ("recvmmsg", "bare reader, recvmmsg batches of 64"),
]


def build_bare_reader(work):
    """Compiles bare-reader.c into the work directory; returns the binary's path, or an error."""
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bare-reader.c")
    out = os.path.join(work, "bare-reader")
    path = os.environ.get("PATH", "") + ":/opt/swift/usr/bin"
    for cc in ["cc", "gcc", "clang"]:
        exe = shutil.which(cc, path=path)
        if exe:
            r = subprocess.run([exe, "-O2", "-o", out, src], capture_output=True, text=True)
            if r.returncode == 0:
                return out, None
            return None, f"{cc} failed: {r.stderr.strip()[-300:]}"
    return None, "no C compiler (cc, gcc or clang) for bare-reader.c"


def udp64_ceiling(lab, tr, args, mode, reader):
    """The 64-byte sink blast of `udp64`, with `mode` on host 1's switch-side port instead of a
    switch: offered frames/s (host 1's tx), and for a bare reader what it read and dropped."""
    cfg = tr.cfg(frame_cfg(sink_mac(2), host_mac(1)))
    if mode == "no-reader":
        _, tx = tr.blast([tr.trafgen(1, cfg)], [2], args.duration)
        return {"offered_pps": tx[1]}
    if reader is None:
        raise Failed("bare-reader not built")
    log = os.path.join(lab.work, f"bare-reader-{mode}.log")
    proc = lab.spawn(lab.ns(lab.sw, [reader, "s1", mode]), log=log)
    time.sleep(0.3)
    if proc.poll() is not None:
        raise Failed("bare-reader exited: " + open(log).read()[-300:])
    try:
        _, tx = tr.blast([tr.trafgen(1, cfg)], [2], args.duration)
    finally:
        lab.stop(proc, sig=signal.SIGTERM)
    lines = [x for x in open(log).read().splitlines() if x.startswith("{")]
    if not lines:
        raise Failed("bare-reader printed no result: " + open(log).read()[-300:])
    r = json.loads(lines[-1])
    # A reader that fell behind makes the kernel take its cheaper drop path: not a ceiling.
    if r["kernel_drops"] > 0.001 * max(1, r["frames"]):
        raise Failed(f"bare-reader fell behind: {r['kernel_drops']} of {r['frames']} frames dropped by the kernel")
    return {"offered_pps": tx[1], "reader_frames": r["frames"], "kernel_drops": r["kernel_drops"]}


def iperf(lab, tr, args, pairs, tx_off=False):
    if tx_off:
        for i in sorted({i for p in pairs for i in p}):
            run(lab.h(i, ["ethtool", "-K", "eth0", "tx", "off"]))
    servers = []
    try:
        for _, s in pairs:
            servers.append(lab.spawn(lab.h(s, ["iperf3", "-s", "-1"])))
        time.sleep(0.3)
        clients = [subprocess.Popen(lab.h(c, ["iperf3", "-c", f"{NET}.{s}", "-t", str(args.tcp_duration), "-J",
                                              "--connect-timeout", "3000"]),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for c, s in pairs]
        total = 0.0
        for p in clients:
            try:
                out, _ = p.communicate(timeout=args.tcp_duration + 15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
                raise Failed("iperf3 timed out")
            try:
                j = json.loads(out)
            except ValueError:
                raise Failed("iperf3 gave no result")
            if "error" in j:
                raise Failed("iperf3: " + j["error"])
            bps = j["end"]["sum_received"]["bits_per_second"]
            if bps < 1e6:
                raise Failed(f"iperf3 moved {bps / 1e6:.2f} Mbit/s")
            total += bps
        return {"gbit_s": total / 1e9}
    finally:
        for s in servers:
            lab.stop(s)
        if tx_off:
            for i in sorted({i for p in pairs for i in p}):
                run(lab.h(i, ["ethtool", "-K", "eth0", "tx", "on"]), check=False)


def latency(lab, tr, args):
    run(lab.h(1, ["ping", "-c", "3", "-i", "0.01", "-W", "1", f"{NET}.2"]), check=False)
    out = run(lab.h(1, ["ping", "-c", str(args.pings), "-i", "0.002", "-W", "1", f"{NET}.2"]),
              check=False, timeout=args.pings * 0.01 + 30)
    rtts = sorted(float(m) for m in re.findall(r"time=([0-9.]+) ms", out))
    if len(rtts) < args.pings * 0.95:
        raise Failed(f"{args.pings - len(rtts)} of {args.pings} pings lost")

    def pct(p):
        return rtts[min(len(rtts) - 1, int(round(p / 100 * (len(rtts) - 1))))] * 1000

    return {"p50_us": pct(50), "p99_us": pct(99), "lost": args.pings - len(rtts)}


def all_to_all(lab, tr, args):
    hosts = [1, 2, 3, 4]
    tr.learn_sinks(hosts)
    cmds = []
    for i in hosts:
        text = "".join(frame_cfg(sink_mac(j), host_mac(i), src_ip=i, dst_ip=j) for j in hosts if j != i)
        cmds.append(tr.trafgen(i, tr.cfg(text)))
    rx, tx = tr.blast(cmds, hosts, args.duration)
    delivered = sum(rx[i] for i in hosts)
    if delivered < 1000:
        raise Failed(f"{delivered:.0f} frames/s delivered")
    return {"offered_pps": sum(tx[i] for i in hosts), "delivered_pps": delivered}


def all_to_all_tcp(lab, tr, args):
    return iperf(lab, tr, args, [(1, 2), (2, 3), (3, 4), (4, 1)])


def broadcast(lab, tr, args):
    receivers = list(range(2, 10))
    cfg = tr.cfg(frame_cfg("ff:ff:ff:ff:ff:ff", host_mac(1), kind="raw"))
    rx, tx = tr.blast([tr.trafgen(1, cfg)], receivers, args.duration)
    copies = sum(rx[i] for i in receivers)
    if copies < 1000:
        raise Failed(f"{copies:.0f} copies/s delivered")
    return {"offered_pps": tx[1], "delivered_copies_pps": copies, "min_port_pps": min(rx[i] for i in receivers)}


def learn_trial(lab, tr, n, base, rate):
    """RFC 2889 style: host 1 offers `n` frames from `n` new source MACs (at `rate`, None = as fast as
    trafgen goes) towards host 2's sink; then host 2 sends one frame to each of them, slowly. Every
    address learned: host 1 receives all n and host 3 (a bystander) sees no flood."""
    src = f"02:{base:02x}:00:00:00:00"
    run(lab.h(1, ["true"]))
    tr.send_once(1, tr.cfg(frame_cfg(sink_mac(2), src, kind="raw", src_inc=n)), n, rate=rate,
                 timeout=n / (rate or 100000) + 60)
    time.sleep(0.3)
    c0 = lab.counters([1, 3])
    tr.send_once(2, tr.cfg(frame_cfg(src, sink_mac(2), kind="raw", dst_inc=n)), n, rate=50000,
                 timeout=n / 50000 + 60)
    time.sleep(0.3)
    c1 = lab.counters([1, 3])
    got, flooded = c1[1][0] - c0[1][0], c1[3][0] - c0[3][0]
    return got >= n and flooded == 0, got, flooded


def rfc2889(lab, tr, args):
    """Learning rate first, into a table that holds only the sink: the capacity trials that follow
    fill the table to its limit, after which every new address evicts an old one."""
    tr.learn_sinks([2])
    result = {"capacity_tested": [], "rate_tested": []}
    base = 0x10
    best = 0
    for rate in args.learn_rates:
        ok, got, flooded = learn_trial(lab, tr, args.learn_count, base, rate=rate)
        base += 1
        result["rate_tested"].append({"rate_pps": rate, "ok": ok, "delivered": got, "flooded": flooded})
        if not ok:
            break
        best = rate
    result["learning_rate_pps"] = best
    capacity = 0
    for n in args.capacity_sizes:
        ok, got, flooded = learn_trial(lab, tr, n, base, rate=100000)
        base += 1
        result["capacity_tested"].append({"addresses": n, "ok": ok, "delivered": got, "flooded": flooded})
        if not ok:
            break
        capacity = n
    result["capacity_addresses"] = capacity
    if capacity == 0 and best == 0:
        raise Failed(f"no address learned: {result['capacity_tested']} {result['rate_tested']}")
    return result


# ---------------------------------------------------------------------------------------------
# Filtering cost (issue 4): the 64-byte sink workload with anti-spoofing on every port, and with a
# 1000-rule FORWARD chain of the shape Xen hosts write, on userswitch and on the Linux bridge with
# the same ebtables rules (nft-based ebtables, inside the switch namespace). The rules are loaded
# after the switch is up and removed when the workload ends (also on failure), since the
# workloads of one switch's turn share its lab.


class NotMeasured(Exception):
    """The workload has no equivalent on this switch: shown as "not measured", never as a figure."""


def host_ip(i):
    return f"{NET}.{i}"


def ebtables_restore(lab, text):
    """Load ebtables-save text into the switch namespace's bridge table (replaces the table)."""
    r = subprocess.run(lab.ns(lab.sw, ["ebtables-restore"]), input=text, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise Failed(f"ebtables-restore: exit {r.returncode}: {(r.stderr or r.stdout).strip()[-300:]}")


EMPTY_FILTER = "*filter\n:INPUT ACCEPT\n:OUTPUT ACCEPT\n:FORWARD ACCEPT\n"


def real_port_rules(lab, counting):
    """Per host port: the three anti-spoofing rules of vif-bridge's shape; with `counting`, a final
    `-i sN -j ACCEPT` whose counter proves that the port's frames went through the chain (the
    DROP rules never match legitimate frames, so their counters stay 0)."""
    rules = []
    for i in range(1, lab.nhosts + 1):
        rules += [f"-A FORWARD -i s{i} -s ! {host_mac(i)} -j DROP",
                  f"-A FORWARD -p IPv4 -i s{i} --ip-src ! {host_ip(i)} -j DROP",
                  f"-A FORWARD -p ARP -i s{i} --arp-ip-src ! {host_ip(i)} -j DROP"]
        if counting:
            rules.append(f"-A FORWARD -i s{i} -j ACCEPT")
    return rules


def xen_rules(lab, total=1000):
    """A FORWARD chain of `total` rules of the Xen shape: 500 fake guests `vifN.0` with
    `-i vifN.0 -s ! MAC -j DROP`, the first ones also `-p IPv4 -i vifN.0 --ip-src ! A -j DROP`,
    then the real ports' rules last, so that every measured frame walks past all the others."""
    real = real_port_rules(lab, counting=True)
    guests = 500
    ip_rules = total - len(real) - guests
    fake = []
    for n in range(1, guests + 1):
        fake.append(f"-A FORWARD -i vif{n}.0 -s ! 00:16:3e:{n >> 8 & 0xff:02x}:{n & 0xff:02x}:01 -j DROP")
        if n <= ip_rules:
            fake.append(f"-A FORWARD -p IPv4 -i vif{n}.0 --ip-src ! 10.100.{n >> 8}.{n & 0xff} -j DROP")
    rules = fake + real
    assert len(rules) == total, len(rules)
    return EMPTY_FILTER + "\n".join(rules) + "\n"


def rule_counters(listing, port):
    """{rule text: packets} of the rules in a `-L --Lc` listing that name `-i port`."""
    out = {}
    for line in listing.splitlines():
        m = re.match(r"(.*?)\s*,\s*pcnt\s*=\s*(\d+)", line.strip())
        if m and re.search(rf"-i {re.escape(port)}(\s|$)", m.group(1)):
            out[m.group(1)] = int(m.group(2))
    return out


def list_counters(lab, switch):
    if isinstance(switch, UserSwitch):
        return switch.ctl(["filter", "-L", "--Lc"])
    return run(lab.ns(lab.sw, ["ebtables", "-L", "--Lc"]))


def check_counters(lab, switch, before, after, delivered):
    """The measured frames (host 1, port s1) must have reached the end of s1's rules: the counting
    ACCEPT rule grew by at least the frames delivered during the measurement, its DROP rules not."""
    b, a = rule_counters(before, "s1"), rule_counters(after, "s1")
    accept = [r for r in a if r.endswith("-j ACCEPT")]
    if not accept:
        raise Failed(f"no counting rule for s1 in the listing: {after[-300:]}")
    grown = a[accept[0]] - b.get(accept[0], 0)
    dropped = {r: a[r] - b.get(r, 0) for r in a if r.endswith("-j DROP") and a[r] != b.get(r, 0)}
    if grown < delivered or dropped:
        raise Failed(f"rule counters do not show the traffic passing: ACCEPT +{grown} for {delivered} "
                     f"delivered, DROP rules grown: {dropped}")
    return grown


def filter_clear(lab, switch):
    if isinstance(switch, UserSwitch):
        for i in range(1, lab.nhosts + 1):
            switch.ctl(["set-port", "br0", f"s{i}", "mac=none", "ip=none"], check=False)
        path = os.path.join(lab.work, "empty.ebt")
        with open(path, "w") as f:
            f.write(EMPTY_FILTER)
        switch.ctl(["filter-restore", path], check=False)
    elif isinstance(switch, LinuxBridge):
        try:
            ebtables_restore(lab, EMPTY_FILTER)
        except Failed:
            pass


def udp64_antispoof(lab, tr, args):
    switch = lab.switch
    if isinstance(switch, UserSwitch):
        for i in range(1, lab.nhosts + 1):
            # Host 2 also sends from its sink MAC (so that the switch learns it on host 2's port):
            # on userswitch, anti-spoofing drops before learning, so that port allows both MACs.
            macs = host_mac(i) + (f",{sink_mac(i)}" if i == 2 else "")
            switch.ctl(["set-port", "br0", f"s{i}", f"mac={macs}", f"ip={host_ip(i)}"])
        shown = switch.ctl(["show"])
        if "anti-spoofing" not in shown:
            raise Failed("anti-spoofing not shown as on after set-port: " + shown[-300:])
    elif isinstance(switch, LinuxBridge):
        # The Linux bridge learns before ebtables' FORWARD chain, so the sink MAC is learned on
        # s2 even though `-i s2 -s ! MAC` drops those frames: the same three rules on every port.
        ebtables_restore(lab, EMPTY_FILTER + "\n".join(real_port_rules(lab, counting=False)) + "\n")
    else:
        raise NotMeasured("no anti-spoofing rules set up for this switch")
    try:
        r = udp64(lab, tr, args, sink=True)
        r["spoofed_delivered"] = spoofed_delivered(lab, tr)
        if r["spoofed_delivered"]:
            raise Failed(f"anti-spoofing not in force: {r['spoofed_delivered']} spoofed frames delivered")
        return r
    finally:
        filter_clear(lab, switch)


def spoofed_delivered(lab, tr, count=200):
    """After the measurement: host 1 sends `count` frames with a forged source MAC and `count`
    with a forged source IP to host 2's sink; anti-spoofing in force delivers none of them."""
    c0 = lab.counters([2])
    tr.send_once(1, tr.cfg(frame_cfg(sink_mac(2), "02:00:00:00:66:01")), count)
    tr.send_once(1, tr.cfg(frame_cfg(sink_mac(2), host_mac(1), src_ip=99)), count)
    time.sleep(0.3)
    return lab.counters([2])[2][0] - c0[2][0]


def udp64_1000rules(lab, tr, args):
    switch = lab.switch
    text = xen_rules(lab)
    path = os.path.join(lab.work, "xen-1000.ebt")
    with open(path, "w") as f:
        f.write(text)
    if isinstance(switch, UserSwitch):
        switch.ctl(["filter-restore", path])
    elif isinstance(switch, LinuxBridge):
        ebtables_restore(lab, text)
    else:
        raise NotMeasured("no ebtables equivalent loaded for this switch")
    try:
        loaded = list_counters(lab, switch)
        n = sum(1 for line in loaded.splitlines() if line.startswith("-"))
        if n != 1000:
            raise Failed(f"{n} rules listed after loading 1000")
        tr.learn_sinks([2])
        before = list_counters(lab, switch)
        r = udp64(lab, tr, args, sink=True)
        after = list_counters(lab, switch)
        # The blast's warm-up and stop also pass frames: at least the measured ones must count.
        r["s1_accept_rule_packets"] = check_counters(lab, switch, before, after,
                                                     int(r["delivered_pps"] * args.duration * 0.9))
        r["rules"] = n
        return r
    finally:
        filter_clear(lab, switch)


def routed_udp64(lab, tr, args):
    """64-byte UDP from the guest (host 1) to the LAN host's (host 2) stack, through the router."""
    run(lab.h(1, ["ping", "-c", "2", "-i", "0.2", "-W", "1", f"{NET}.2"]), check=False)  # resolve both ways
    cfg = tr.cfg(frame_cfg(lab.switch.router_mac(), host_mac(1)))
    rx, tx = tr.blast([tr.trafgen(1, cfg)], [2], args.duration)
    if rx[2] < 1000:
        raise Failed(f"{rx[2]:.0f} frames/s delivered")
    return {"offered_pps": tx[1], "delivered_pps": rx[2]}


def routed_tcp(lab, tr, args):
    run(lab.h(1, ["ping", "-c", "2", "-i", "0.2", "-W", "1", f"{NET}.2"]), check=False)
    return iperf(lab, tr, args, [(1, 2)])


# The workloads of routed mode; every other workload is a bridge's.
ROUTED_WORKLOADS = {"udp64_routed", "tcp_routed"}

WORKLOADS = [
    ("udp64_sink", lambda lab, tr, a: udp64(lab, tr, a, sink=True)),
    ("udp64_sink_antispoof", udp64_antispoof),
    ("udp64_sink_1000rules", udp64_1000rules),
    ("udp64_stack", lambda lab, tr, a: udp64(lab, tr, a, sink=False)),
    ("tcp_offload", lambda lab, tr, a: iperf(lab, tr, a, [(1, 2)])),
    ("tcp_tx_off", lambda lab, tr, a: iperf(lab, tr, a, [(1, 2)], tx_off=True)),
    ("latency", latency),
    ("all_to_all_udp64", all_to_all),
    ("all_to_all_tcp", all_to_all_tcp),
    ("broadcast_8", broadcast),
    ("rfc2889", rfc2889),
    ("udp64_routed", routed_udp64),
    ("tcp_routed", routed_tcp),
]

# (workload, metric, label, unit, higher is better, scale)
FIGURES = [
    ("udp64_sink", "delivered_pps", "64-byte UDP, tester-port sink: delivered", "Mpps", True, 1e-6),
    ("udp64_sink", "offered_pps", "64-byte UDP, tester-port sink: offered", "Mpps", True, 1e-6),
    ("udp64_sink_antispoof", "delivered_pps", "64-byte UDP sink, anti-spoofing on every port: delivered", "Mpps", True, 1e-6),
    ("udp64_sink_1000rules", "delivered_pps", "64-byte UDP sink, 1000-rule Xen FORWARD chain: delivered", "Mpps", True, 1e-6),
    ("udp64_stack", "delivered_pps", "64-byte UDP to the receiver's stack: delivered", "Mpps", True, 1e-6),
    ("tcp_offload", "gbit_s", "TCP, one stream, default offloads", "Gbit/s", True, 1),
    ("tcp_tx_off", "gbit_s", "TCP, one stream, tx off", "Gbit/s", True, 1),
    ("latency", "p50_us", "ping round trip p50", "µs", False, 1),
    ("latency", "p99_us", "ping round trip p99", "µs", False, 1),
    ("all_to_all_udp64", "delivered_pps", "4 hosts all-to-all, 64-byte: delivered", "Mpps", True, 1e-6),
    ("all_to_all_tcp", "gbit_s", "4 hosts all-to-all, TCP (4 streams)", "Gbit/s", True, 1),
    ("broadcast_8", "delivered_copies_pps", "broadcast to 8 ports: delivered copies", "Mpps", True, 1e-6),
    ("rfc2889", "capacity_addresses", "address caching capacity (largest size tested, no flood)", "addresses", True, 1),
    ("rfc2889", "learning_rate_pps", "address learning rate (highest rate tested, all learned)", "kframes/s", True, 1e-3),
    ("udp64_routed", "delivered_pps", "routed: 64-byte UDP guest to LAN host's stack: delivered", "Mpps", True, 1e-6),
    ("tcp_routed", "gbit_s", "routed: TCP, one stream guest to LAN host, default offloads", "Gbit/s", True, 1),
]


def cpu_busy(seconds=2.0):
    """Fraction of all CPUs busy over `seconds` (from /proc/stat), while the harness itself idles."""
    def sample():
        f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
        return sum(f), f[3] + f[4]  # total, idle + iowait
    t0, i0 = sample()
    time.sleep(seconds)
    t1, i1 = sample()
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


def wait_for_quiet(args):
    """Measure only on an otherwise idle machine: before each switch, the CPUs must be at most
    `--max-busy` busy while the harness waits (other people's work), up to `--quiet-wait` seconds.
    The 1-minute load average is recorded too, but not waited on: the previous switch's own
    traffic keeps it up for a minute after the lab is gone."""
    deadline = time.monotonic() + args.quiet_wait
    while True:
        busy = cpu_busy()
        if busy <= args.max_busy or time.monotonic() > deadline:
            return busy, os.getloadavg()[0]
        print(f"  machine busy ({busy * 100:.0f}% of the CPUs in use by others): waiting", flush=True)
        time.sleep(5)


def memory_probe(args, work):
    """Resident memory of userswitchd with 2, 16 and 64 ports (veth ends inside one namespace)."""
    out = {}
    for ports in args.memory_ports:
        lab = Lab(work, 0)
        CURRENT.append(lab)
        try:
            lab.build()
            for i in range(1, ports + 1):
                run(["ip", "-n", lab.sw, "link", "add", f"m{i}", "type", "veth", "peer", "name", f"mp{i}"])
                run(["ip", "-n", lab.sw, "link", "set", f"m{i}", "up"])
                run(["ip", "-n", lab.sw, "link", "set", f"mp{i}", "up"])
            us = UserSwitch(lab, args)
            lab.nhosts = 0
            us.start()
            base = us.rss_kib()
            for i in range(1, ports + 1):
                us.ctl(["add-port", "br0", f"m{i}"])
            time.sleep(0.5)
            rss = us.rss_kib()
            out[str(ports)] = {"rss_kib": rss, "rss_kib_no_ports": base,
                               "per_port_kib": (rss - base) / ports if rss and base else None}
            us.stop()
        except Exception as e:  # noqa: BLE001 - reported, not hidden
            out[str(ports)] = {"failed": str(e)}
        finally:
            lab.destroy()
            CURRENT.remove(lab)
    return out


CURRENT = []


def cleanup(*_):
    for lab in list(CURRENT):
        lab.destroy()
    CURRENT.clear()


def on_signal(signum, _frame):
    print(f"\nsignal {signum}: cleaning up", file=sys.stderr, flush=True)
    cleanup()
    sys.exit(130)


def median(xs):
    return statistics.median(xs) if xs else None


def summarize(raw):
    """Median of each figure over the rounds that did not fail; 'failed' when all failed."""
    summary = {}
    for sw in raw["switches"]:
        summary[sw] = {}
        for wl, metric, *_ in FIGURES:
            runs = raw["runs"][sw].get(wl, [])
            vals = [r["result"][metric] for r in runs if "result" in r]
            errors = [r["failed"] for r in runs if "failed" in r]
            summary[sw][f"{wl}.{metric}"] = {"median": median(vals), "runs": vals, "failed": errors}
            if runs and all("not_measured" in r for r in runs):
                summary[sw][f"{wl}.{metric}"]["not_measured"] = runs[0]["not_measured"]
    return summary


def fmt(v, scale, unit):
    x = v * scale
    if unit == "addresses":
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.2f}" if abs(x) < 10 else f"{x:.1f}"


def table(raw, summary):
    sws = raw["switches"]
    head = "| figure | " + " | ".join(LABELS[s] for s in sws)
    ratio_cols = [s for s in ("linux-bridge", "ovs-netdev") if s in sws and "userswitch" in sws]
    head += "".join(f" | userswitch / {LABELS[s]}" for s in ratio_cols) + " |"
    routed = "userswitch-router" in sws and "linux-route" in sws
    if routed:
        head = head[:-2] + " | userswitch router / Linux routing |"
    lines = [head, "|" + "---|" * (1 + len(sws) + len(ratio_cols) + (1 if routed else 0))]
    for wl, metric, label, unit, higher, scale in FIGURES:
        if not any(raw["runs"][s].get(wl) for s in sws):
            continue  # workload not selected in this run (--workloads)
        cells = []
        for s in sws:
            e = summary[s][f"{wl}.{metric}"]
            if e["median"] is None:
                cells.append("not measured" if e.get("not_measured") else "failed" if e["failed"] else "-")
            else:
                note = f" ({len(e['failed'])} failed)" if e["failed"] else ""
                cells.append(fmt(e["median"], scale, unit) + note)
        pairs = [("userswitch", r) for r in ratio_cols] + ([("userswitch-router", "linux-route")] if routed else [])
        for mine, theirs in pairs:
            a, b = summary[mine][f"{wl}.{metric}"]["median"], summary[theirs][f"{wl}.{metric}"]["median"]
            if a is None or b is None or b == 0:
                cells.append("-")
            else:
                cells.append(f"{a / b:.2f}x")
        lines.append(f"| {label} ({unit}{'' if higher else ', lower is better'}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ceiling_table(raw, summary):
    """The generator ceiling beside the switches' 64-byte sink figures of the same run."""
    if "ceiling" not in raw:
        return ""
    lines = ["Generator ceiling (64-byte tester-port sink; trafgen's offered rate with no switch on host 1's "
             "switch-side port, measured in the same rounds; the kernel's side of a packet-socket delivery "
             "runs on trafgen's CPU):", "",
             "| on host 1's switch-side port | offered (Mpps) | rounds |", "|---|---|---|"]
    for mode, label in CEILING_REFERENCES:
        if mode not in raw["ceiling"]:
            continue  # a run made before this reference existed
        runs = raw["ceiling"][mode]
        vals = [r["result"]["offered_pps"] for r in runs if "result" in r]
        errors = [r["failed"] for r in runs if "failed" in r]
        cell = fmt(median(vals), 1e-6, "Mpps") if vals else "failed: " + (errors[0] if errors else "-")
        if vals and errors:
            cell += f" ({len(errors)} failed)"
        lines.append(f"| {label} | {cell} | " + ", ".join(f"{v * 1e-6:.2f}" for v in vals) + " |")
    for s in raw["switches"]:
        e = summary[s].get("udp64_sink.delivered_pps", {})
        if e.get("median") is not None:
            lines.append(f"| {LABELS[s]}: delivered (for comparison) | {fmt(e['median'], 1e-6, 'Mpps')} | "
                         + ", ".join(f"{v * 1e-6:.2f}" for v in e["runs"]) + " |")
    ovs = summary.get("ovs-netdev", {}).get("udp64_sink.delivered_pps", {}).get("median")
    if ovs:
        lines.append(f"| 2.5x Open vSwitch's delivered (the bar) | {fmt(2.5 * ovs, 1e-6, 'Mpps')} | |")
    return "\n".join(lines)


FILTER_WORKLOADS = [("udp64_sink_antispoof", "anti-spoofing on every port"),
                    ("udp64_sink_1000rules", "1000-rule Xen FORWARD chain")]


def filter_table(raw, summary):
    """Filtering cost: each filter workload beside the plain 64-byte sink, per switch, with the
    ratio filtered / unfiltered (the ratio of the medians; in brackets the per-round ratios, each
    of a round's filtered and plain runs on the same lab, one after the other)."""
    wls = [(w, label) for w, label in FILTER_WORKLOADS
           if any(raw["runs"][s].get(w) for s in raw["switches"])]
    if not wls or not any(raw["runs"][s].get("udp64_sink") for s in raw["switches"]):
        return ""
    head = "| switch | no rules (Mpps) | " + " | ".join(f"{label} (Mpps) | {label} / no rules" for _, label in wls) + " |"
    lines = ["Filtering cost (64-byte UDP, tester-port sink, delivered):", "", head,
             "|" + "---|" * (2 + 2 * len(wls))]
    for s in raw["switches"]:
        base = summary[s]["udp64_sink.delivered_pps"]
        plain = base["median"]
        cells = [LABELS[s], fmt(plain, 1e-6, "Mpps") if plain is not None else "failed"]
        by_round = {r["round"]: r["result"]["delivered_pps"] for r in raw["runs"][s].get("udp64_sink", []) if "result" in r}
        for w, _ in wls:
            e = summary[s][f"{w}.delivered_pps"]
            if e["median"] is None:
                cells += ["not measured" if e.get("not_measured") else "failed" if e["failed"] else "-", "-"]
                continue
            note = f" ({len(e['failed'])} failed)" if e["failed"] else ""
            cells.append(fmt(e["median"], 1e-6, "Mpps") + note)
            rounds = [r["result"]["delivered_pps"] / by_round[r["round"]] for r in raw["runs"][s].get(w, [])
                      if "result" in r and by_round.get(r["round"])]
            ratio = f"{e['median'] / plain:.2f}" if plain else "-"
            if len(rounds) > 1:
                ratio += " [" + ", ".join(f"{x:.2f}" for x in rounds) + "]"
            cells.append(ratio)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def chart(raw, summary, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figs = [f for f in FIGURES if f[1] != "offered_pps" and any(raw["runs"][s].get(f[0]) for s in raw["switches"])]
    if not figs:
        return False
    sws = raw["switches"]
    fig, axes = plt.subplots(2, (len(figs) + 1) // 2, figsize=(3.2 * ((len(figs) + 1) // 2), 6.5))
    for ax, (wl, metric, label, unit, higher, scale) in zip(axes.flat, figs):
        vals, names, colors = [], [], []
        for s, c in zip(sws, ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]):
            m = summary[s][f"{wl}.{metric}"]["median"]
            vals.append(0 if m is None else m * scale)
            missing = "\n(not measured)" if summary[s][f"{wl}.{metric}"].get("not_measured") else "\n(failed)"
            names.append(LABELS[s].replace(" (netdev)", "").replace("Open vSwitch", "OVS") + (missing if m is None else ""))
            colors.append(c)
        ax.bar(names, vals, color=colors)
        ax.set_title(f"{label}\n[{unit}{'' if higher else ', lower better'}]", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(figs):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="one round, short runs: a full cycle in a few minutes")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--switches", default=",".join(SWITCHES))
    ap.add_argument("--workloads", default=",".join(w for w, _ in WORKLOADS))
    ap.add_argument("--userswitch-bin", default=os.environ.get("USERSWITCH_BIN", ".build/release"))
    ap.add_argument("--out", default="tools/bench/results")
    ap.add_argument("--name", default=None,
                    help="results are OUT/bench-NAME.{md,json,png} (default: quick or full)")
    ap.add_argument("--max-busy", type=float, default=float(os.environ.get("BENCH_MAX_BUSY", "0.15")),
                    help="fraction of the CPUs others may use when a switch's turn starts (default 0.15)")
    ap.add_argument("--quiet-wait", type=float, default=600, help="seconds to wait for a quiet machine")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--no-ceiling", action="store_true",
                    help="skip the generator ceiling (run with udp64_sink: trafgen towards the sink with no "
                         "switch, and with a bare packet-socket reader, on host 1's port)")
    ap.add_argument("--fdb-size", type=int, default=1 << 20,
                    help="addresses every switch's FDB is sized for, where configurable (default 1048576)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME:VAR=VALUE[,VAR=VALUE]",
                    help="also run userswitch with these environment variables, as switch userswitch@NAME "
                         "(before/after comparisons in one run); BIN=DIR runs the binaries in DIR instead "
                         "(another build), ARGS='--spin-us 0' adds userswitchd options")
    args = ap.parse_args()
    q = args.quick
    args.rounds = args.rounds or (1 if q else 3)
    args.duration = 2 if q else 4
    args.tcp_duration = 3 if q else 5
    args.pings = 300 if q else 1000
    args.capacity_sizes = [1024, 8192] if q else [1024, 4096, 16384, 65536, 262144]
    args.learn_count = 1000
    args.learn_rates = [100000, 400000] if q else [50000, 100000, 200000, 400000, 800000]
    args.memory_ports = [2, 16] if q else [2, 16, 64]
    switches = args.switches.split(",")
    for v in args.variant:
        name, _, assigns = v.partition(":")
        env = dict(a.split("=", 1) for a in assigns.split(",") if a)
        key = f"userswitch@{name}"
        # BIN=DIR is not an environment variable: the variant runs the binaries in DIR (another build).
        attrs = {"name": key, "env": env}
        if "BIN" in env:
            attrs["bindir"] = env.pop("BIN")
        if "ARGS" in env:
            attrs["daemon_args"] = env.pop("ARGS").split()
        # A variant of the bridge when the bridge runs, and of the router when the router runs.
        for base, cls in [("userswitch", UserSwitch), ("userswitch-router", UserSwitchRouter)]:
            if base not in switches:
                continue
            key = f"{base}@{name}"
            SWITCH_CLASSES[key] = type(f"{cls.__name__}_{name}", (cls,), dict(attrs, name=key))
            LABELS[key] = f"{LABELS[base]} [{name}]"
            if key not in switches:
                switches.insert(switches.index(base) + 1, key)
    known = [w for w, _ in WORKLOADS]
    unknown = [w for w in args.workloads.split(",") if w not in known]
    if unknown:
        sys.exit(f"bench: unknown workload {', '.join(unknown)} (--workloads takes a comma-separated list of: "
                 f"{', '.join(known)})")
    workloads = [(w, f) for w, f in WORKLOADS if w in args.workloads.split(",")]
    for tool in ["trafgen", "iperf3", "ethtool", "ping"] + (["ovs-vswitchd"] if "ovs-netdev" in switches else []):
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} not found (run `make bench`, which installs the Debian packages)")
    if any(s.startswith("userswitch") for s in switches) and not os.access(os.path.join(args.userswitch_bin, "userswitchd"), os.X_OK):
        sys.exit(f"bench: no userswitchd in {args.userswitch_bin} (make build, or --userswitch-bin)")
    os.makedirs(args.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix=f"userswitch-bench-{PID}-")
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    raw = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "quick": q, "rounds": args.rounds,
           "switches": switches, "kernel": os.uname().release, "cpus": os.cpu_count(),
           "duration_s": args.duration, "tcp_duration_s": args.tcp_duration, "loads": [],
           "runs": {s: {} for s in switches}}
    ceiling = "udp64_sink" in args.workloads.split(",") and not args.no_ceiling
    if ceiling:
        raw["ceiling"] = {m: [] for m, _ in CEILING_REFERENCES}
        reader, reader_error = build_bare_reader(work)
    try:
        for rnd in range(args.rounds):
            # The order rotates every round, so that no switch always takes the same place in a
            # round: measured here, the place alone moved the 64-byte sink by about 10%
            # (docs/performance.md, "Before and after the house-in-order refactor").
            k = rnd % len(switches)
            for sw in switches[k:] + switches[:k]:
                busy, load = wait_for_quiet(args)
                raw["loads"].append({"round": rnd, "switch": sw, "busy_before": busy, "load1": load})
                print(f"round {rnd + 1}/{args.rounds}  {LABELS[sw]}  (CPUs {busy * 100:.0f}% busy before, "
                      f"load {load:.2f})", flush=True)
                lab = Lab(work, 9)
                CURRENT.append(lab)
                switch = SWITCH_CLASSES[sw](lab, args)
                lab.switch = switch  # the filter workloads load rules into the switch under test
                if hasattr(switch, "fdb_capacity"):
                    switch.fdb_capacity = args.fdb_size
                try:
                    lab.build()
                    switch.start()
                    time.sleep(0.5)
                    start_error = None
                except Exception as e:  # noqa: BLE001
                    start_error = f"switch did not start: {e}"
                tr = Traffic(lab, args)
                for wl, fn in workloads:
                    entry = {"round": rnd}
                    t0 = time.monotonic()
                    if start_error:
                        entry["failed"] = start_error
                    else:
                        try:
                            if (wl in ROUTED_WORKLOADS) != (switch.kind == "router"):
                                raise NotMeasured("routed workload on a bridge" if wl in ROUTED_WORKLOADS
                                                  else "bridge workload on a router")
                            entry["result"] = fn(lab, tr, args)
                        except NotMeasured as e:
                            entry["not_measured"] = str(e)
                        except (Failed, RuntimeError, subprocess.TimeoutExpired, KeyError, ValueError) as e:
                            entry["failed"] = str(e)[:500]
                    entry["seconds"] = round(time.monotonic() - t0, 1)
                    raw["runs"][sw].setdefault(wl, []).append(entry)
                    shown = entry.get("result", {"FAILED": entry.get("failed")} if "failed" in entry
                                      else {"not measured": entry.get("not_measured")})
                    short = {k: (round(v, 1) if isinstance(v, float) else v) for k, v in shown.items()
                             if not isinstance(v, list)}
                    print(f"    {wl:18s} {short}", flush=True)
                try:
                    switch.stop()
                finally:
                    lab.destroy()
                    CURRENT.remove(lab)
            for mode, label in CEILING_REFERENCES if ceiling else []:
                busy, load = wait_for_quiet(args)
                print(f"round {rnd + 1}/{args.rounds}  generator ceiling: {label}  (CPUs {busy * 100:.0f}% busy "
                      f"before, load {load:.2f})", flush=True)
                lab = Lab(work, 9)
                CURRENT.append(lab)
                entry = {"round": rnd, "busy_before": busy}
                try:
                    lab.build()
                    if mode != "no-reader" and reader is None:
                        raise Failed(reader_error)
                    entry["result"] = udp64_ceiling(lab, Traffic(lab, args), args, mode, reader)
                except (Failed, RuntimeError, subprocess.TimeoutExpired, KeyError, ValueError) as e:
                    entry["failed"] = str(e)[:500]
                finally:
                    lab.destroy()
                    CURRENT.remove(lab)
                raw["ceiling"][mode].append(entry)
                print(f"    udp64_ceiling      {entry.get('result', {'FAILED': entry.get('failed')})}", flush=True)
        if "userswitch" in switches and not args.no_memory:
            raw["userswitchd_memory"] = memory_probe(args, work)
            print("  userswitchd memory:", raw["userswitchd_memory"], flush=True)
    finally:
        cleanup()
        shutil.rmtree(work, ignore_errors=True)
    raw["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    summary = summarize(raw)
    raw["summary"] = summary
    stamp = args.name or ("quick" if q else "full")
    with open(os.path.join(args.out, f"bench-{stamp}.json"), "w") as f:
        json.dump(raw, f, indent=1)
    md = table(raw, summary)
    fmd = filter_table(raw, summary)
    if fmd:
        md += "\n\n" + fmd
    ceiling_md = ceiling_table(raw, summary)
    if ceiling_md:
        md += "\n\n" + ceiling_md
    busy = [x["busy_before"] * 100 for x in raw["loads"]]
    header = (f"userswitch benchmark, {raw['started']} ({'quick' if q else 'full'}: {args.rounds} round(s), "
              f"medians; {raw['cpus']} CPUs, kernel {raw['kernel']}; CPUs busy with other work before each "
              f"switch's turn: {min(busy):.0f}-{max(busy):.0f}%)\n\n")
    if "userswitchd_memory" in raw:
        mem = "; ".join(f"{p} ports: {m.get('rss_kib', 0) / 1024:.1f} MiB" if "rss_kib" in m else f"{p} ports: failed"
                        for p, m in raw["userswitchd_memory"].items())
        md += f"\n\nuserswitchd resident memory: {mem}"
    with open(os.path.join(args.out, f"bench-{stamp}.md"), "w") as f:
        f.write(header + md + "\n")
    png = os.path.join(args.out, f"bench-{stamp}.png")
    drew = chart(raw, summary, png)
    print("\n" + header + md)
    print(f"\nraw runs: {args.out}/bench-{stamp}.json  table: {args.out}/bench-{stamp}.md"
          + (f"  chart: {png}" if drew else "  (no chart: python3-matplotlib missing)"))


if __name__ == "__main__":
    main()
