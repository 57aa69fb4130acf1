#!/usr/bin/env bash
# Side-by-side: pfai vs Debian's docker-registry (CNCF distribution 2.8) on loopback, same
# client (`pfai bench`), same machine, one run. Prints each figure with the ratio
# pfai/distribution, each server's CPU-seconds per GiB pulled and peak anonymous RSS.
#
#   bash benches/compare.sh            # full workloads (1 GiB blobs, 20 s manifest run)
#   QUICK=1 bash benches/compare.sh    # small sizes, to check the script itself
#
# Needs: python3; docker-registry (apt-get install docker-registry) for the comparison column.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
PFAI="$PWD/target/release/pfai"
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

SIZE=1GiB; SMALL=64MiB; DUR=20s; CHUNK=16MiB
if [ -n "${QUICK:-}" ]; then SIZE=32MiB; SMALL=8MiB; DUR=2s; CHUNK=4MiB; fi

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "server at $1 did not start" >&2; exit 1; }

# Peak anonymous RSS, sampled every 50 ms into a file, until the process ends.
watch_rss() {
  local pid=$1 out=$2
  ( peak=0; while [ -e "/proc/$pid" ]; do
      v=$(awk '/^RssAnon:/{print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
      [ -n "$v" ] && [ "$v" -gt "$peak" ] && peak=$v && echo "$peak" > "$out"
      sleep 0.05; done ) &
}
cpu_seconds() { python3 -c "import os,sys;f=open('/proc/$1/stat').read().rsplit(')',1)[1].split();print((int(f[11])+int(f[12]))/os.sysconf('SC_CLK_TCK'))"; }

# --- pfai
P1=$(free_port)
PFAI_LISTEN=127.0.0.1:$P1 RUST_LOG=warn "$PFAI" serve --data-dir "$tmp/pfai" &
pfai_pid=$!; pids+=("$pfai_pid")
wait_http "http://127.0.0.1:$P1/api/v1/health"
TOKEN=$(cat "$tmp/pfai/initial-admin-token")
curl -fsS -o /dev/null -X POST "http://127.0.0.1:$P1/api/v1/orgs" -H "Authorization: Bearer $TOKEN" -d '{"name":"bench"}'
curl -fsS -o /dev/null -X POST "http://127.0.0.1:$P1/api/v1/forge/repos" -H "Authorization: Bearer $TOKEN" -d '{"owner":"bench","name":"blobs"}'
watch_rss "$pfai_pid" "$tmp/pfai.rss"

# --- distribution
dist_pid=""
if command -v docker-registry >/dev/null 2>&1; then
  P2=$(free_port)
  cat > "$tmp/dist.yml" <<YML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $tmp/dist}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$P2}
YML
  docker-registry serve "$tmp/dist.yml" >/dev/null 2>&1 &
  dist_pid=$!; pids+=("$dist_pid")
  wait_http "http://127.0.0.1:$P2/v2/"
  watch_rss "$dist_pid" "$tmp/dist.rss"
else
  echo "docker-registry not installed: showing pfai alone (apt-get install docker-registry)" >&2
fi

# run <label> <url> <token-or-empty> <pid> -> one JSON object per workload in $tmp/<label>.jsonl
run() {
  local label=$1 url=$2 tok=$3 pid=$4 out="$tmp/$1.jsonl"
  local auth=(--url "$url"); [ -n "$tok" ] && auth+=(--token "$tok")
  b() { "$PFAI" bench "$@" --json; }
  emit() { python3 -c "import json,sys;ph=json.loads(sys.argv[2])['phases'];print(json.dumps({'workload':sys.argv[1],'phases':ph,'cpu':float(sys.argv[3])}))" "$1" "$2" "$3" >> "$out"; }
  local c0 c1 r
  r=$(b blobs "${auth[@]}" --size $SIZE --count 1 --pulls 0 --seed 1); emit "push $SIZE monolithic" "$r" 0
  r=$(b blobs "${auth[@]}" --size $SIZE --count 1 --pulls 0 --seed 2 --chunk $CHUNK); emit "push $SIZE chunked ($CHUNK)" "$r" 0
  b blobs "${auth[@]}" --size $SIZE --count 1 --pulls 1 --pull-only --seed 1 --no-verify >/dev/null  # warm the cache
  c0=$(cpu_seconds "$pid"); r=$(b blobs "${auth[@]}" --size $SIZE --count 1 --pulls 3 --pull-only --seed 1 --no-verify); c1=$(cpu_seconds "$pid")
  emit "pull $SIZE (warm)" "$r" "$(python3 -c "print($c1-$c0)")"
  b blobs "${auth[@]}" --size $SMALL --count 1 --pulls 0 --seed 3 >/dev/null
  c0=$(cpu_seconds "$pid"); r=$(b blobs "${auth[@]}" --size $SMALL --count 1 --pulls 16 --concurrency 16 --pull-only --seed 3 --no-verify); c1=$(cpu_seconds "$pid")
  emit "16 concurrent pulls of $SMALL" "$r" "$(python3 -c "print($c1-$c0)")"
  r=$(b manifests "${auth[@]}" --duration $DUR --concurrency 64); emit "manifest GET, 64 conns, $DUR" "$r" 0
}

run pfai "http://127.0.0.1:$P1" "$TOKEN" "$pfai_pid"
[ -n "$dist_pid" ] && run dist "http://127.0.0.1:${P2}" "" "$dist_pid"
sleep 0.2

python3 - "$tmp" <<'PY'
import json, os, sys
tmp = sys.argv[1]
def load(label):
    p = os.path.join(tmp, label + ".jsonl")
    return [json.loads(l) for l in open(p)] if os.path.exists(p) else []
def rss(label):
    p = os.path.join(tmp, label + ".rss")
    return int(open(p).read().strip()) / 1024 if os.path.exists(p) else None
a, b = load("pfai"), load("dist")
rows = []
def ratio(x, y): return f"{x / y:.2f}" if x and y else "-"
for i, w in enumerate(a):
    other = b[i] if i < len(b) else None
    for j, ph in enumerate(w["phases"]):
        o = other["phases"][j] if other else None
        name = f'{w["workload"]} [{ph["phase"]}]'
        if ph["phase"].startswith("manifest"):
            rows.append((name + " req/s", ph["requests_per_s"], o and o["requests_per_s"]))
            rows.append((name + " p99 ms", ph["latency"]["p99_ms"], o and o["latency"]["p99_ms"]))
        else:
            rows.append((name + " MiB/s", ph["mib_per_s"], o and o["mib_per_s"]))
        if ph["phase"] == "pull" and w["cpu"]:
            gib = ph["bytes"] / 2**30
            rows.append((w["workload"] + " server CPU-s per GiB", w["cpu"] / gib, o and other["cpu"] / (o["bytes"] / 2**30)))
        if ph["errors"] or (o and o["errors"]):
            rows.append((name + " errors", ph["errors"], o and o["errors"]))
rows.append(("peak anonymous RSS MiB", rss("pfai"), rss("dist")))
w0 = max(len(r[0]) for r in rows)
print(f'{"figure":<{w0}}  {"pfai":>10}  {"distribution":>12}  {"pfai/dist":>9}')
for n, x, y in rows:
    fx = f"{x:.1f}" if isinstance(x, float) else str(x)
    fy = "-" if y is None else (f"{y:.1f}" if isinstance(y, float) else str(y))
    print(f"{n:<{w0}}  {fx:>10}  {fy:>12}  {ratio(x, y) if isinstance(x,(int,float)) and isinstance(y,(int,float)) else '-':>9}")
PY
