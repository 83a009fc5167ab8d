#!/usr/bin/env bash
# Partition test across hosts (issue #10).
#
# Builds HOSTS test hosts (network namespaces, each with a veth on one private bridge, addresses
# 10.213.0.10+i/24), runs `examples/node` in each (ping every 1 s, ping timeout 1 s, inactivity
# timeout 3 s, metrics on the namespace's own 127.0.0.1:9100), host i dialing hosts 0..i-1 so
# the hosts form a full mesh with one connection per pair. Then it cuts host CUT off (its bridge
# port: `ip link set <veth> down`), and checks from the nodes' logs and metrics that:
#   - every peer of the cut host, and the cut host itself, closes the lost connection with
#     reason `timeout` within the ping bounds (inactivity timeout - ping interval - 0.5 s ..
#     inactivity timeout + 0.75 s goodbye backstop + 1 s scheduling slack);
#   - no other connection is disturbed (same connection on every other pair, no event for it);
#   - after the heal (`ip link set <veth> up`) the side that had dialed each lost connection
#     dials it again, and every pair is back to exactly one connection.
# The cut lasts until every side noticed, plus --hold seconds.
# It prints a table of what it measured and PASS (exit 0) or FAIL (exit 1). Needs root, Linux
# network namespaces, a bridge and veth; without them it prints "partition test SKIPPED: <why>"
# and exits 0. It removes every namespace, link and process it created, also on failure or
# Ctrl-C. It touches no address outside its own namespaces (no address on the bridge, no route
# in the caller's namespace), so it can run beside `cargo test` or another copy of itself.
#
# Usage: scripts/partition.sh [--hosts N] [--cut I] [--hold SECS] [--no-build] [--keep-logs]
#   --hosts N    hosts in the mesh, 3 to 9 (default 4)
#   --cut I      the host cut off, 0 to N-1 (default 1: it dialed host 0 and was dialed by the
#                others, so both directions of redial are checked)
#   --hold SECS  keep the host cut off this long after every side noticed, 0 to 30 (default 5),
#                so that the redials during the cut fail and back off
#   --no-build   use the already built node (target/debug/examples/node)
#   --keep-logs  keep the nodes' logs (they are kept anyway on FAIL)
# The node is built with `cargo build --example node --all-features` (debug profile, the features `cargo test --all-features` builds, so nothing is rebuilt after it) into
# $CARGO_TARGET_DIR, or the repository's target/ when that is not set.
set -uo pipefail
export LC_ALL=C

HOSTS=4
CUT=1
BUILD=1
KEEP_LOGS=0
HOLD=5            # s the cut lasts after every side noticed it
PING_INTERVAL=1   # s
PING_TIMEOUT=1    # s
INACTIVITY=3      # s
SUBNET=10.213.0   # .10+i/24
PORT=4001
METRICS_PORT=9100

while [ $# -gt 0 ]; do
  case "$1" in
    --hosts) HOSTS=${2:?--hosts needs a number}; shift 2 ;;
    --cut) CUT=${2:?--cut needs a host index}; shift 2 ;;
    --hold) HOLD=${2:?--hold needs seconds}; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --keep-logs) KEEP_LOGS=1; shift ;;
    -h|--help) sed -n '2,/^set -uo/{/^set -uo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) echo "partition.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$HOSTS" in [3-9]) ;; *) echo "partition.sh: --hosts must be 3 to 9" >&2; exit 2 ;; esac
case "$HOLD" in [0-9]|[12][0-9]|30) ;; *) echo "partition.sh: --hold must be 0 to 30 seconds" >&2; exit 2 ;; esac
case "$CUT" in [0-9]) [ "$CUT" -lt "$HOSTS" ] || { echo "partition.sh: --cut must be below --hosts" >&2; exit 2; } ;;
  *) echo "partition.sh: --cut must be a host index" >&2; exit 2 ;; esac

REPO=$(cd "$(dirname "$0")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR=$REPO/$TARGET_DIR ;; esac
BIN=$TARGET_DIR/debug/examples/node

# Names unique to this run; interface names stay within 15 characters (cmpt + pid + 2).
TAG=cmpt$$
BRIDGE=${TAG}b
NAMESPACES=()   # created namespaces, removed by cleanup
LINKS=()        # created links in our namespace, removed by cleanup
NODE_PIDS=()    # node processes started, killed by cleanup
WORK=""
RESULT=FAIL

skip() {
  echo "partition test SKIPPED: $*"
  RESULT=SKIPPED
  exit 0
}

# Microseconds since the epoch (bash 5); fallback `date` for older shells.
if [ -n "${EPOCHREALTIME:-}" ]; then
  now_us() { local t=${EPOCHREALTIME/./}; echo $((10#$t)); }
else
  now_us() { date +%s%6N; }
fi
# 1234567 (us) -> 1.23
secs() { local us=$1 sign=""; [ "$us" -lt 0 ] && { sign=-; us=$((-us)); }; printf '%s%d.%02d' "$sign" $((us / 1000000)) $(((us % 1000000) / 10000)); }

cleanup() {
  local rc=$? pid ns link waited
  trap - EXIT INT TERM
  # Every process in our namespaces (the nodes, and anything they started), then the nodes by id.
  for ns in "${NAMESPACES[@]}"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
  done
  for pid in "${NODE_PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; done
  for pid in "${NODE_PIDS[@]}"; do
    waited=0
    while kill -0 "$pid" 2>/dev/null && [ $waited -lt 50 ]; do sleep 0.1; waited=$((waited + 1)); done
  done
  for link in "${LINKS[@]}"; do ip link del "$link" 2>/dev/null; done
  for ns in "${NAMESPACES[@]}"; do ip netns del "$ns" 2>/dev/null; done
  ip link del "$BRIDGE" 2>/dev/null
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    if [ "$RESULT" = PASS ] && [ "$KEEP_LOGS" = 0 ]; then
      rm -rf "$WORK"
    elif [ "$RESULT" != SKIPPED ]; then
      echo "logs kept in $WORK"
    fi
  fi
  [ "$rc" = 0 ] && [ "$RESULT" = FAIL ] && rc=1
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "partition test: interrupted"; exit 130' INT
trap 'echo "partition test: terminated"; exit 143' TERM

# ---- Can we run at all? ---------------------------------------------------------------------

[ "$(uname -s)" = Linux ] || skip "network namespaces need Linux (this is $(uname -s))"
[ "$(id -u)" = 0 ] || skip "needs root for network namespaces, a bridge and veth (run it as root)"
if ! command -v ip >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "no 'ip' command: trying apt-get install iproute2"
    { export DEBIAN_FRONTEND=noninteractive; timeout 300 apt-get update -qq && timeout 300 apt-get install -y -qq iproute2; } >/dev/null 2>&1
  fi
  command -v ip >/dev/null 2>&1 || skip "the 'ip' command (iproute2) is missing"
fi
probe_error=$(
  {
    ip netns add "${TAG}p" &&
      ip netns exec "${TAG}p" ip link set lo up &&
      ip link add "${TAG}pb" type bridge &&
      ip link add "${TAG}p0" type veth peer name "${TAG}p1" netns "${TAG}p" &&
      ip link set "${TAG}p0" master "${TAG}pb"
  } 2>&1
)
probe_status=$?
ip link del "${TAG}p0" 2>/dev/null
ip link del "${TAG}pb" 2>/dev/null
ip netns del "${TAG}p" 2>/dev/null
[ $probe_status = 0 ] || skip "cannot create a network namespace with a veth on a bridge: ${probe_error//$'\n'/; }"

# ---- Build ----------------------------------------------------------------------------------

if [ $BUILD = 1 ]; then
  echo "building the node: cargo build --example node --all-features (target: $TARGET_DIR)"
  started=$(now_us)
  (cd "$REPO" && cargo build --quiet --example node --all-features) ||
    { echo "partition test FAILED: the node does not build"; exit 1; }
  echo "  built in $(secs $(($(now_us) - started))) s"
fi
[ -x "$BIN" ] || { echo "partition test FAILED: no node binary at $BIN"; exit 1; }

# ---- Hosts ----------------------------------------------------------------------------------

WORK=$(mktemp -d "${TMPDIR:-/tmp}/partition.XXXXXX")
# Run a copy: a `cargo test` or `cargo build` at the same time may rewrite the binary in target/.
cp "$BIN" "$WORK/node" || { echo "partition test FAILED: cannot copy $BIN"; exit 1; }
BIN=$WORK/node
run_started=$(now_us)

# The bridge does not hand its frames to iptables (a host firewall would drop them otherwise).
if ! ip link add "$BRIDGE" type bridge nf_call_iptables 0 2>/dev/null; then
  ip link add "$BRIDGE" type bridge || { echo "partition test FAILED: cannot create bridge $BRIDGE"; exit 1; }
fi
LINKS+=("$BRIDGE")
ip link set "$BRIDGE" up || exit 1

ip_of() { echo "$SUBNET.$((10 + $1))"; }
ns_of() { echo "$TAG-$1"; }
veth_of() { echo "${TAG}h$1"; } # the host's bridge port, in our namespace

for ((i = 0; i < HOSTS; i++)); do
  ns=$(ns_of $i)
  veth=$(veth_of $i)
  ip netns add "$ns" || { echo "partition test FAILED: cannot create namespace $ns"; exit 1; }
  NAMESPACES+=("$ns")
  ip link add "$veth" type veth peer name "${TAG}n$i" netns "$ns" || exit 1
  LINKS+=("$veth")
  ip link set "$veth" master "$BRIDGE" && ip link set "$veth" up &&
    ip -n "$ns" link set lo up &&
    ip -n "$ns" link set "${TAG}n$i" name eth0 &&
    ip -n "$ns" addr add "$(ip_of $i)/24" dev eth0 &&
    ip -n "$ns" link set eth0 up ||
    { echo "partition test FAILED: cannot set up host $i"; exit 1; }
done

# Each output line of a node, prefixed with the time it was read (us since the epoch).
stamp() {
  local line
  while IFS= read -r line; do printf '%s %s\n' "${EPOCHREALTIME/./}" "$line"; done
}
if [ -z "${EPOCHREALTIME:-}" ]; then
  stamp() { local line; while IFS= read -r line; do printf '%s %s\n' "$(date +%s%6N)" "$line"; done; }
fi

# Waits until "$@" succeeds, polling every 200 ms, for at most $1 seconds. Returns 1 on timeout.
wait_for() {
  local limit_us=$(($1 * 1000000)) started
  shift
  started=$(now_us)
  while true; do
    "$@" && return 0
    [ $(($(now_us) - started)) -ge "$limit_us" ] && return 1
    sleep 0.2
  done
}

log_of() { echo "$WORK/node$1.log"; }
has_line() { grep -q -- "$2" "$(log_of "$1")" 2>/dev/null; }

# Prometheus text of node $1, fetched inside its namespace (no curl needed).
scrape() {
  ip netns exec "$(ns_of "$1")" timeout 3 bash -c '
    exec 3<>/dev/tcp/127.0.0.1/'"$METRICS_PORT"' || exit 1
    printf "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n" >&3
    cat <&3' 2>/dev/null | tr -d '\r'
}
# Whether every node holds HOSTS-1 peers, HOSTS-1 established connections and nothing pending.
mesh_settled() {
  local i s
  for ((i = 0; i < HOSTS; i++)); do
    s=$(scrape $i)
    [ "$(awk '$1 == "connection_manager_connected_peers" { print $2 }' <<<"$s")" = $((HOSTS - 1)) ] || return 1
    [ "$(awk '$1 ~ /^connection_manager_established_connections/ { n += $2 } END { print n + 0 }' <<<"$s")" = $((HOSTS - 1)) ] || return 1
    [ "$(awk '$1 == "connection_manager_pending_connections" { print $2 }' <<<"$s")" = 0 ] || return 1
  done
}

PEER=()
start_node() {
  local i=$1 j args=()
  args=(--listen "/ip4/$(ip_of $i)/tcp/$PORT" --key-file "$WORK/node$i.key"
    --metrics "127.0.0.1:$METRICS_PORT" --status-interval 0
    --ping-interval "$PING_INTERVAL" --ping-timeout "$PING_TIMEOUT" --inactivity-timeout "$INACTIVITY")
  for ((j = 0; j < i; j++)); do args+=(--dial "/ip4/$(ip_of $j)/tcp/$PORT/p2p/${PEER[$j]}"); done
  ip netns exec "$(ns_of $i)" env NO_COLOR=1 "$BIN" "${args[@]}" > >(stamp >"$(log_of $i)") 2>&1 &
  NODE_PIDS+=($!)
  disown $!  # no "Killed" notices from bash at cleanup
  wait_for 15 has_line $i "metrics on http" || {
    echo "partition test FAILED: node $i did not start within 15 s:"
    sed 's/^[0-9]* /  /' "$(log_of $i)" | tail -20
    exit 1
  }
  has_line $i "listening on /ip4/$(ip_of $i)/" || wait_for 5 has_line $i "listening on /ip4/$(ip_of $i)/" || {
    echo "partition test FAILED: node $i does not listen on $(ip_of $i)"; exit 1; }
  PEER[$i]=$(awk '$2 == "peer" && $3 == "id:" { print $4; exit }' "$(log_of $i)")
}

# ---- Log queries (every line is "<us> <text>") ------------------------------------------------

# The first "kept connection" of node $1 with node $2 after time $3: "<us> <connection> we|they".
kept_after() {
  awk -v since="$3" -v peer="${PEER[$2]}" '
    $1 + 0 > since + 0 && $2 == "manager:" && $3 == "kept" && $7 == peer {
      print $1, $5, ($8 == "(we" ? "we" : "they"); exit }' "$(log_of "$1")"
}
# The first close reported by node $1 of a connection with node $2 after time $3:
# "<us> <connection> us|them <reason...>".
closed_after() {
  awk -v since="$3" -v peer="${PEER[$2]}" '
    $1 + 0 > since + 0 && $2 == "manager:" && $3 == "connection" && $6 == peer && $7 == "closed" {
      by = $9; sub(/:$/, "", by); reason = ""
      for (f = 10; f <= NF && $f !~ /^\(/; f++) reason = reason (reason == "" ? "" : " ") $f
      print $1, $4, by, reason; exit }' "$(log_of "$1")"
}
# Lines of node $1 about node $2 after time $3 that change or question its connection.
events_after() {
  awk -v since="$3" -v peer="${PEER[$2]}" '
    $1 + 0 > since + 0 && $2 == "manager:" && index($0, peer) &&
    $0 ~ /kept connection|closed by|duplicate|goodbye from|refused|failed|redialing|replacing|trimming|banned/' "$(log_of "$1")"
}
# Redials of node $2 that node $1 scheduled after time $3 (and before $4).
redials_after() {
  awk -v since="$3" -v until="${4:-99999999999999999}" -v peer="${PEER[$2]}" '
    $1 + 0 > since + 0 && $1 + 0 < until + 0 && $2 == "manager:" && $3 == "redialing" && $4 == peer' "$(log_of "$1")" | wc -l
}
# Failed dials of node $1 to node $2 between times $3 and $4.
dial_failures() {
  awk -v since="$3" -v until="$4" -v peer="${PEER[$2]}" '
    $1 + 0 > since + 0 && $1 + 0 < until + 0 && $2 == "manager:" && $3 == "dial" && $6 == peer && $7 == "failed:"' "$(log_of "$1")" | wc -l
}

# ---- Start and mesh -------------------------------------------------------------------------

echo "partition test: $HOSTS hosts on bridge $BRIDGE ($SUBNET.0/24), host i dials hosts 0..i-1;"
echo "  ping every ${PING_INTERVAL} s, ping timeout ${PING_TIMEOUT} s, inactivity timeout ${INACTIVITY} s"
mesh_started=$(now_us)
for ((i = 0; i < HOSTS; i++)); do start_node $i; done

declare -A CONN INIT   # CONN[i,j]: connection id node i keeps with node j; INIT[i,j]: we|they
mesh_complete() {
  local i j
  for ((i = 0; i < HOSTS; i++)); do
    for ((j = 0; j < HOSTS; j++)); do
      [ $i = $j ] && continue
      [ -n "$(kept_after $i $j 0)" ] || return 1
    done
  done
  mesh_settled
}
if ! wait_for 20 mesh_complete; then
  echo "partition test FAILED: no full mesh with one connection per pair within 20 s"
  for ((i = 0; i < HOSTS; i++)); do
    echo "  node $i: $(scrape $i | grep -E '^connection_manager_(connected_peers|established|pending)' | tr '\n' ' ')"
  done
  exit 1
fi
mesh_us=$(($(now_us) - mesh_started))
for ((i = 0; i < HOSTS; i++)); do
  for ((j = 0; j < HOSTS; j++)); do
    [ $i = $j ] && continue
    read -r _ CONN[$i,$j] INIT[$i,$j] <<<"$(kept_after $i $j 0)"
  done
done
PAIRS=$((HOSTS * (HOSTS - 1) / 2))
echo "  full mesh: $PAIRS pairs, one connection each, $(secs $mesh_us) s after the first node started"
# Every connection has had a ping answered (its health is reported then) before the cut.
all_pinged() {
  local i j
  for ((i = 0; i < HOSTS; i++)); do
    for ((j = 0; j < HOSTS; j++)); do
      [ $i = $j ] || has_line $i "manager: health of connection ${CONN[$i,$j]} with ${PEER[$j]}:" || return 1
    done
  done
}
wait_for 10 all_pinged || { echo "partition test FAILED: no ping answered on every connection within 10 s"; exit 1; }

FAILURES=()
fail() { FAILURES+=("$*"); }

# "<all disconnects> <timeout disconnects>" of node $1, from its metrics.
disconnects() {
  scrape "$1" | awk '$1 ~ /^connection_manager_disconnects_total/ { n += $2 }
    $1 ~ /^connection_manager_disconnects_total\{reason="timeout"/ { t += $2 } END { print n + 0, t + 0 }'
}
declare -A DISC_BEFORE TIMEOUT_BEFORE
for ((i = 0; i < HOSTS; i++)); do
  read -r DISC_BEFORE[$i] TIMEOUT_BEFORE[$i] <<<"$(disconnects $i)"
done

# ---- Cut ------------------------------------------------------------------------------------

OTHERS=()
for ((i = 0; i < HOSTS; i++)); do [ $i = "$CUT" ] || OTHERS+=("$i"); done
cut_at=$(now_us)
ip link set "$(veth_of "$CUT")" down || { echo "partition test FAILED: cannot set $(veth_of "$CUT") down"; exit 1; }
echo "  cut: host $CUT ($(ip_of "$CUT")) off the bridge (ip link set $(veth_of "$CUT") down)"

LOWER_US=$(((INACTIVITY - PING_INTERVAL) * 1000000 - 500000))
UPPER_US=$((INACTIVITY * 1000000 + 750000 + 1000000))
all_detected() {
  local o
  for o in "${OTHERS[@]}"; do
    [ -n "$(closed_after "$o" "$CUT" "$cut_at")" ] && [ -n "$(closed_after "$CUT" "$o" "$cut_at")" ] || return 1
  done
}
wait_for $(((UPPER_US + 999999) / 1000000 + 5)) all_detected
detected_wait=$(($(now_us) - cut_at))
# The cut goes on for a while: the redials across it fail and back off.
sleep "$HOLD"

# ---- Heal -----------------------------------------------------------------------------------

heal_at=$(now_us)
ip link set "$(veth_of "$CUT")" up || { echo "partition test FAILED: cannot set $(veth_of "$CUT") up"; exit 1; }
echo "  heal: $(secs $((heal_at - cut_at))) s after the cut, $HOLD s after every side noticed (ip link set $(veth_of "$CUT") up)"

all_back() {
  local o
  for o in "${OTHERS[@]}"; do
    [ -n "$(kept_after "$o" "$CUT" "$heal_at")" ] && [ -n "$(kept_after "$CUT" "$o" "$heal_at")" ] || return 1
  done
  mesh_settled
}
wait_for 40 all_back || fail "the mesh was not back to one connection per pair within 40 s of the heal"
back_us=$(($(now_us) - heal_at))
# Anything late (a duplicate, a second connection) would show within a ping interval or two.
sleep $((PING_INTERVAL * 2))

# ---- Checks and table -----------------------------------------------------------------------

printf '\n  %-6s %-9s %-28s %-28s %-19s %s\n' pair "dialed by" "closed at the peer after" "closed at the cut host after" "redials: cut/failed" "new connection after heal"
for o in "${OTHERS[@]}"; do
  pair="$o-$CUT"
  if [ "${INIT[$o,$CUT]}" = we ]; then initiator=$o; listener=$CUT; else initiator=$CUT; listener=$o; fi
  cells=()
  for side in "$o $CUT" "$CUT $o"; do
    read -r a b <<<"$side"
    c=$(closed_after "$a" "$b" "$cut_at")
    if [ -z "$c" ]; then
      cells+=("not detected")
      fail "node $a did not notice the loss of node $b within $(secs $detected_wait) s of the cut"
      continue
    fi
    read -r t cid by reason <<<"$c"
    d=$((t - cut_at))
    cells+=("$(secs $d) s ($reason, by $by)")
    [ "$cid" = "${CONN[$a,$b]}" ] || fail "node $a closed connection $cid with node $b, not the one it kept (${CONN[$a,$b]})"
    [ "$reason" = timeout ] || fail "node $a closed its connection with node $b as '$reason', not 'timeout'"
    [ "$by" = us ] || fail "node $a reports its connection with node $b closed by them (no goodbye can cross the cut)"
    [ $d -ge $LOWER_US ] || fail "node $a noticed the loss of node $b after $(secs $d) s, before the ping bounds allow ($(secs $LOWER_US) s): something else closed it"
    [ $d -le $UPPER_US ] || fail "node $a noticed the loss of node $b after $(secs $d) s, later than the ping bounds ($(secs $UPPER_US) s)"
  done
  # The reconnection: both sides keep a new connection, dialed by the side that dialed the old one.
  ki=$(kept_after $initiator $listener "$heal_at")
  kl=$(kept_after $listener $initiator "$heal_at")
  if [ -n "$ki" ] && [ -n "$kl" ]; then
    read -r ti _ wi <<<"$ki"
    read -r tl _ wl <<<"$kl"
    t=$((ti > tl ? ti : tl))
    new="$(secs $((t - heal_at))) s"
    [ "$wi" = we ] && [ "$wl" = they ] || { new="$new (dialed by the wrong side)"; fail "the new connection $pair was not dialed by node $initiator, which had dialed the lost one"; }
  else
    new="none"
    fail "pair $pair has no new connection on both sides after the heal"
  fi
  r_init=$(redials_after $initiator $listener "$cut_at" "$heal_at")
  f_init=$(dial_failures $initiator $listener "$cut_at" "$heal_at")
  r_list=$(redials_after $listener $initiator "$cut_at")
  [ "$(redials_after $initiator $listener "$cut_at")" -gt 0 ] || fail "node $initiator never scheduled a redial of node $listener"
  redial="$r_init/$f_init"
  if [ "$r_list" != 0 ]; then
    redial="$redial; $listener: $r_list"
    fail "node $listener, which had not dialed the lost connection to node $initiator nor asked for the peer, scheduled $r_list redial(s) of it"
  fi
  # No goodbye can cross the cut, and nothing after the heal has a reason to say one.
  for side in "$o $CUT" "$CUT $o"; do
    read -r a b <<<"$side"
    g=$(events_after "$a" "$b" "$cut_at" | grep 'goodbye from' | head -1)
    [ -z "$g" ] || fail "node $a got a goodbye from node $b after the cut: $(cut -d' ' -f3- <<<"$g")"
  done
  printf '  %-6s %-9s %-28s %-28s %-19s %s\n' "$pair" "$initiator" "${cells[0]}" "${cells[1]}" "$redial" "$new"
done

# Nothing else disturbed: every other pair keeps the connection it had, with no event about it.
undisturbed=0
for ((a = 0; a < HOSTS; a++)); do
  for ((b = a + 1; b < HOSTS; b++)); do
    [ $a = "$CUT" ] || [ $b = "$CUT" ] && continue
    ok=1
    for side in "$a $b" "$b $a"; do
      read -r x y <<<"$side"
      ev=$(events_after "$x" "$y" "$cut_at")
      if [ -n "$ev" ]; then
        ok=0
        fail "pair $a-$b was disturbed: node $x logged: $(head -1 <<<"$ev" | cut -d' ' -f2-)"
      fi
    done
    undisturbed=$((undisturbed + ok))
  done
done

# The metrics agree: the cut host lost HOSTS-1 connections, every other node one, all timeouts.
for ((i = 0; i < HOSTS; i++)); do
  read -r total timeouts <<<"$(disconnects $i)"
  expected=1
  [ $i = "$CUT" ] && expected=$((HOSTS - 1))
  lost=$((total - DISC_BEFORE[$i]))
  timeouts=$((timeouts - TIMEOUT_BEFORE[$i]))
  [ "$lost" = $expected ] || fail "metrics of node $i: $lost disconnect(s) during the test, expected $expected"
  [ "$timeouts" = "$lost" ] || fail "metrics of node $i: only $timeouts of its $lost disconnect(s) with reason timeout"
  METRIC_LINE[$i]="node $i: $lost lost ($timeouts timeout)"
done
mesh_settled || fail "after the heal a node does not hold exactly one connection per peer (metrics)"

echo
echo "  detection bounds: $(secs $LOWER_US) .. $(secs $UPPER_US) s after the cut (inactivity ${INACTIVITY} s - ping interval ${PING_INTERVAL} s - 0.5 s .. inactivity + 0.75 s goodbye backstop + 1 s slack)"
echo "  undisturbed pairs: $undisturbed of $((PAIRS - HOSTS + 1)) (same connection, no event)"
echo "  every pair back to one connection $(secs $back_us) s after the heal (metrics: connected peers, established, pending)"
metric_lines=$(IFS=';'; echo "${METRIC_LINE[*]}")
echo "  disconnects in metrics: ${metric_lines//;/; }"
echo "  run time (hosts up to hosts down): $(secs $(($(now_us) - run_started))) s"
if [ ${#FAILURES[@]} = 0 ]; then
  RESULT=PASS
  echo "PASS"
  exit 0
fi
echo "FAIL:"
for f in "${FAILURES[@]}"; do echo "  - $f"; done
exit 1
