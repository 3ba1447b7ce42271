# chaos/netns.sh: sourced, not run. Three pingora-node "hosts" as network
# namespaces on one bridge, for multihost.sh, purge-partition.sh and
# upgrade-limits.sh:
#
#   . chaos/netns.sh
#   netns_init NAME TAG SUBNET [TOOL...]   # root, tools, names, work dir, cleanup trap, a free /24
#   netns_pids() { ...; }                  # optional: more PIDs for the cleanup to stop
#   netns_hosts                            # the bridge (at $net.254) and hosts $(ns 1..3) at $net.1..3
#                                          # (NETNS_HOSTS=4 before it: four hosts)
#
# and the checks' helpers: status I (node I's /status on admin port 9090),
# field PYTHON (runs PYTHON with d, the JSON document read from stdin),
# wait_until SECONDS COMMAND..., check DESCRIPTION COMMAND... (prints
# "ok" or "FAIL" and counts them in passed and failed).
#
# netns_init exits 0 with "NAME: SKIP: ..." without root or network
# namespaces, and installs the missing Debian tools (iproute2, iptables,
# curl, python3, and the TOOLs named: ss comes with iproute2). It sets tag
# (the prefix of every link and namespace, at most 15 characters with its
# suffixes), br, work (a temporary directory), pids (processes to stop on
# exit, the script appends to it) and net (a 10.SUBNET.x /24 no route of
# this host uses). The cleanup, on exit, stops every PID in pids and from
# netns_pids (SIGCONT first: a test may have stopped one), waiting up to
# 10 s each before SIGKILL, deletes the namespaces, the bridge and the
# FORWARD rule, and removes the work dir unless KEEP=1.

ns() { echo "$tag-n$1"; }

# netns_args "$@": the scripts take no arguments. -h, --help or help
# prints the script's header (its usage) and exits 0; anything else is
# refused with the usage (exit 2), before anything is built or created:
# "chaos/multihost.sh -h" used to start a whole run.
netns_args() {
  [ $# -eq 0 ] && return 0
  case $1 in
    -h | --help | help) chaos_usage "chaos/$(basename "$0")"; exit 0 ;;
  esac
  { echo "$0: unknown argument \"$1\" (it takes none)"; echo; chaos_usage "chaos/$(basename "$0")"; } >&2
  exit 2
}

# chaos_usage SCRIPT: SCRIPT's header comment, the lines after #! up to
# the first line that is not a comment.
chaos_usage() { sed -n '2,/^[^#]/p' "$1" | grep '^#' | sed 's/^# \{0,1\}//'; }

netns_pids() { :; }

netns_init() {
  local name=$1 t=$2 subnet=$3 c err
  shift 3
  NETNS_NAME=$name
  if [ "$(id -u)" != 0 ]; then
    echo "$name: SKIP: needs root (it creates network namespaces, a bridge and iptables rules)"
    exit 0
  fi
  command -v go >/dev/null || { echo "$name: SKIP: go is not installed"; exit 0; }
  local need=()
  for c in ip iptables curl python3 "$@"; do
    if ! command -v "$c" >/dev/null; then
      case $c in ip | ss) need+=(iproute2) ;; *) need+=("$c") ;; esac
    fi
  done
  if [ ${#need[@]} -gt 0 ]; then
    echo "== installing ${need[*]} (apt-get)"
    timeout 600 apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  # NETNS_TAG: another prefix (the names must stay within 15 characters);
  # NETNS_NOPID=1: the prefix without the script's PID after it (a prefix
  # of 9 to 13 characters, which the PID would take past 15; the caller
  # keeps it unique)
  tag=${NETNS_TAG:-$t}
  [ "${NETNS_NOPID:-0}" = 1 ] || tag=$tag$$
  if ! err=$(ip netns add "$tag-probe" 2>&1); then
    echo "$name: SKIP: cannot create network namespaces here: $err"
    exit 0
  fi
  ip netns del "$tag-probe"
  br=$tag
  work=$(mktemp -d "/tmp/pingora-$name.XXXXXX")
  pids=()
  NETNS_FWD_RULE=0
  trap netns_cleanup EXIT
  net=""
  for c in $(seq $(($$ % 200 + 20)) 250) $(seq 20 250); do
    if ! ip -4 route | grep -q "^10\.$subnet\.$c\."; then net=10.$subnet.$c; break; fi
  done
  [ -n "$net" ] || { echo "$name: no free 10.$subnet.x.0/24 subnet"; exit 1; }
}

netns_hosts() {
  local i n
  echo "== network: bridge $br, $net.0/24, namespaces $(for i in $(seq 1 "${NETNS_HOSTS:-3}"); do printf '%s ' "$(ns "$i")"; done)"
  ip link add "$br" type bridge
  ip addr add "$net.254/24" dev "$br"
  ip link set "$br" up
  # Docker leaves the FORWARD policy at DROP, which also drops bridged
  # traffic when br_netfilter is loaded.
  iptables -I FORWARD -i "$br" -o "$br" -j ACCEPT && NETNS_FWD_RULE=1
  for i in $(seq 1 "${NETNS_HOSTS:-3}"); do
    n=$(ns "$i")
    ip netns add "$n"
    ip link add "${tag}h$i" type veth peer name eth0 netns "$n"
    ip link set "${tag}h$i" master "$br" up
    ip -n "$n" addr add "$net.$i/24" dev eth0
    ip -n "$n" link set eth0 up
    ip -n "$n" link set lo up
  done
}

netns_cleanup() {
  set +e
  local p i all
  # shellcheck disable=SC2207 # PIDs are plain numbers
  all=("${pids[@]}" $(netns_pids))
  for p in "${all[@]}"; do kill -CONT "$p" 2>/dev/null; kill "$p" 2>/dev/null; done
  for p in "${all[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null
  done
  for i in $(seq 1 "${NETNS_HOSTS:-3}"); do ip netns del "$(ns "$i")" 2>/dev/null; done
  ip link del "$br" 2>/dev/null
  [ "$NETNS_FWD_RULE" = 1 ] && iptables -D FORWARD -i "$br" -o "$br" -j ACCEPT 2>/dev/null
  if [ "${KEEP:-0}" = 1 ]; then echo "logs kept in $work"; else rm -rf "$work"; fi
}

status() { curl -s --max-time 2 "http://$net.$1:9090/status" || true; }
field() {
  python3 -c "import json,sys
try: d=json.load(sys.stdin)
except Exception: sys.exit(0)
$1" 2>/dev/null
}
wait_until() { # seconds, command...
  local limit=$1 end
  shift
  end=$(($(date +%s) + limit))
  until "$@"; do
    [ "$(date +%s)" -ge "$end" ] && return 1
    sleep 0.1
  done
}
passed=0
failed=0
check() { # description, command...
  local what=$1
  shift
  if "$@"; then passed=$((passed + 1)); echo "ok    $what"; else failed=$((failed + 1)); echo "FAIL  $what"; fi
}
