#!/bin/bash
# reader-ceiling.sh: which way of reading a port costs the generator's CPU least? A veth
# transmits in the sender's context, so the kernel's side of a delivery to a packet socket runs on
# the sender's CPU: for an RX ring, the copy into the slot, whose first touch
# (`packet_lookup_frame`, reading the status word the reader last wrote from the other CPU) is one
# of the largest items there (docs/performance.md, "64-byte frames"); for recvmmsg, queueing an
# skb (and for io_uring, task work), with the copy made later by the reader on its own CPU. This
# compares readers in one lab, round by round: the harness's generator ceiling with more readers
# and more rounds.
#
#   [ROUNDS=6] [SECS=3] [PERF=1|sender] [TOP=12] [READERS="ring:4096x2048 ring:4096x256 recvmmsg uring"] tools/bench/reader-ceiling.sh
#
# A reader is a bare-reader.c mode (none, ring, ring-userswitch, ring-v3, recvmmsg):
# the V2 rings optionally with SLOTSxSLOT_SIZE (default 4096x2048, userswitch's small ring), the V3
# ring with BLOCKSxBLOCK_SIZE (default 16x524288), and a ring reader with `+N` (`ring+200`) waits
# N pause instructions after a pass that found the ring empty, instead of looking at the head
# slot's status word again at once; `none` opens no socket (the kernel drops each frame). Or a
# reader is `uring` (uring-reader.c: the socket's queue read with an io_uring multishot recv,
# built against liburing). Two hosts in namespaces; on h1's switch-side port the reader runs on
# CPU 1, and trafgen (which pins itself to CPU 0) sends the sink's 60-byte frames from h1. The
# figure is what trafgen offers (frames/s received by the switch-side port). A run in which the
# kernel dropped frames for the reader is marked and left out of the median (a drop is cheaper
# than a delivery). PERF=1 also samples the reader's CPU with perf during each measurement and
# prints the reader's kernel time per frame: what receiving costs the switch's side (for readers
# that poll with a system call, recvmmsg, the empty polls are in it too, so it is an upper bound).
# PERF=sender samples the generator's CPU instead (CPU 0, where the kernel's side of every
# delivery runs) and prints its largest symbols in nanoseconds per offered frame (TOP of them):
# what each reader costs the sender. Everything it creates is removed on exit.
set -u
ROUNDS=${ROUNDS:-6}; SECS=${SECS:-3}; READERS=${READERS:-"ring:4096x2048 ring:4096x256 recvmmsg uring"}
P=rc$$; W=$(mktemp -d /tmp/usw-readers.XXXXXX); R=
cleanup() {
  stop_blast
  if [ -n "$R" ]; then kill "$R" 2>/dev/null; wait "$R" 2>/dev/null; fi
  remove_lab "$P" 2 "" "$W"
}
trap cleanup EXIT INT TERM
. "$(dirname "$0")/lab-hosts.sh"
cc=$(PATH="$PATH:/opt/swift/usr/bin" command -v cc || PATH="$PATH:/opt/swift/usr/bin" command -v gcc ||
     PATH="$PATH:/opt/swift/usr/bin" command -v clang) || { echo "no C compiler for bare-reader.c" >&2; exit 1; }
"$cc" -O2 -o "$W/bare-reader" "$(dirname "$0")/bare-reader.c" || exit 1
if [[ " $READERS " == *" uring "* ]]; then
  "$cc" -O2 -o "$W/uring-reader" "$(dirname "$0")/uring-reader.c" -luring || exit 1
fi
add_hosts "$P" 2
rx() { cat /sys/class/net/${P}s1/statistics/rx_packets; }

declare -A runs
for round in $(seq 1 "$ROUNDS"); do
  for g in $READERS; do
    base=${g%%+*}; backoff=0; [[ $g == *+* ]] && backoff=${g#*+}
    reader=(env BACKOFF=$backoff "$W/bare-reader" ${P}s1 "${base%%:*}")
    [[ $base == *:* ]] && { shape=${base#*:}; reader+=("${shape%x*}" "${shape#*x}"); }
    [ "$g" = uring ] && reader=("$W/uring-reader" ${P}s1)
    taskset -c 1 "${reader[@]}" > "$W/reader.log" 2>&1 & R=$!
    sleep 0.3
    kill -0 "$R" 2>/dev/null || { cat "$W/reader.log" >&2; exit 1; }
    blast_sink "$P" "$W"
    sleep 1
    a=$(rx)
    case "${PERF:-0}" in
      1) perf record -q -C 1 -o "$W/perf.data" -- sleep "$SECS" 2>/dev/null ;;
      sender) perf record -q -C 0 -o "$W/perf.data" -- sleep "$SECS" 2>/dev/null ;;
      *) sleep "$SECS" ;;
    esac
    b=$(rx)
    stop_blast
    kill "$R"; wait "$R" 2>/dev/null; R=
    pps=$(( (b - a) / SECS ))
    drops=$(sed -n 's/.*"kernel_drops": \([0-9]*\).*/\1/p' "$W/reader.log")
    mark=""; [ "${drops:-0}" -gt 0 ] && mark=" (reader fell behind: ${drops} kernel drops)"
    cost=""
    if [ "${PERF:-0}" = 1 ] && [ "$b" -gt "$a" ]; then
      kernel=$(perf report -i "$W/perf.data" --sort dso --stdio 2>/dev/null |
               awk '/^ +[0-9.]+%/ && /\[kernel/ { sub("%", "", $1); s += $1 } END { print s + 0 }')
      cost=$(awk -v k="$kernel" -v s="$SECS" -v n=$((b - a)) \
             'BEGIN { printf ", reader CPU %.0f%% in the kernel, %.2f us per frame", k, k / 100 * s * 1e6 / n }')
    fi
    echo "round $round  ${g}: trafgen offered $pps frames/s$cost$mark"
    if [ "${PERF:-0}" = sender ] && [ "$b" -gt "$a" ]; then
      # The generator's CPU, per offered frame: the largest kernel and trafgen symbols.
      perf report -i "$W/perf.data" --no-children --sort symbol --stdio 2>/dev/null |
        awk -v s="$SECS" -v n=$((b - a)) '/^ +[0-9.]+%/ { p = $1; sub("%", "", p); $1 = ""; $2 = "";
          sub(/^ +/, ""); sub(/( +-)+ *$/, ""); printf "    %6.0f ns  %s\n", p / 100 * s * 1e9 / n, $0 }' | head -"${TOP:-12}"
    fi
    [ -z "$mark" ] && runs[$g]="${runs[$g]:-} $pps"
  done
done
echo
for g in $READERS; do
  sorted=$(tr ' ' '\n' <<< "${runs[$g]:-}" | grep . | sort -n)
  n=$(grep -c . <<< "$sorted")
  if [ "$n" -eq 0 ]; then echo "$g: no run without drops"; continue; fi
  median=$(sed -n "$(( (n + 1) / 2 ))p" <<< "$sorted")
  echo "$g: median $median frames/s over $n runs (all: $(tr '\n' ' ' <<< "$sorted"))"
done
