#!/usr/bin/env bash
# Side by side, in one run on one machine, with one client (`pfai bench`): pfai, Debian's
# docker-registry (CNCF distribution 2.8) and nginx serving the same blob as a static file
# (`sendfile on`: the practical ceiling of a pull), plus the disk's `dd conv=fdatasync`
# bandwidth. Prints every figure with its ratio, then the goals of issue #18 with the ratio
# measured in this run.
#
#   bash benches/compare.sh            # full workloads (1 GiB blobs, 1 M tags: ~15 minutes)
#   QUICK=1 bash benches/compare.sh    # small sizes, to check the script itself
#
# Needs python3, curl; docker-registry and nginx (apt-get install docker-registry nginx) for
# their columns. BENCH_DIR picks the disk the data dirs live on (default /var/tmp); the
# BLAKE3-vs-SHA-256 push runs on a tmpfs (/dev/shm) so the disk is not the limit.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
PFAI="$PWD/target/release/pfai"
tmp=$(mktemp -d -p "${BENCH_DIR:-/var/tmp}" pfai-compare.XXXXXX)
shm=$(mktemp -d -p /dev/shm pfai-compare.XXXXXX)
out="$tmp/results"
mkdir -p "$out"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp" "$shm"
}
trap cleanup EXIT

SIZE=1GiB; SIZE_MIB=1024; SMALL=64MiB; DUR=10s; CHUNK=16MiB; PAIRS=3
CONNS="1 16 64 256"; TAGS="10000 100000 1000000"
if [ -n "${QUICK:-}" ]; then
  SIZE=32MiB; SIZE_MIB=32; SMALL=8MiB; DUR=1s; CHUNK=4MiB; PAIRS=1; CONNS="1 16"; TAGS="1000 5000"
fi

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "server at $1 did not start" >&2; exit 1; }

# Peak anonymous RSS (KiB), sampled every 50 ms into a file, until the process ends.
watch_rss() {
  local pid=$1 file=$2
  ( peak=0; while [ -e "/proc/$pid" ]; do
      v=$(awk '/^RssAnon:/{print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
      [ -n "$v" ] && [ "$v" -gt "$peak" ] && peak=$v && echo "$peak" > "$file"
      sleep 0.05; done ) &
}
# CPU-seconds (user + system) of the given processes.
cpu_seconds() {
  python3 - "$@" <<'PY'
import os, sys
t = 0
for pid in sys.argv[1:]:
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    t += int(f[11]) + int(f[12])
print(t / os.sysconf("SC_CLK_TCK"))
PY
}
# Waits for dirty pages to reach the disk and lets it settle before a write workload. As root
# it also drops the clean page cache, so a run's memory stays near its working set: in a VM
# whose host backs guest memory lazily (this one), writing into never-touched guest pages runs
# at a tenth to a quarter of the usual speed (`dd` to tmpfs: 3.3 GB/s for the first 6 GiB, then
# 330 – 870 MB/s), and a page cache grown by earlier pushes puts later writes on such pages.
settle() {
  sync
  { echo 1 >/proc/sys/vm/drop_caches; } 2>/dev/null || true
  sleep 3
}
# profile <label> <pid> <command...>: samples the server's CPU (`perf record -e cpu-clock`)
# while the command runs and keeps the top of the report (kernel vs user space, hottest
# symbols) in $out/<label>.profile, so what bounds a figure is measured, not guessed.
profile() {
  local label=$1 pid=$2; shift 2
  if ! command -v perf >/dev/null 2>&1; then
    echo "perf not installed: no profile of $label (apt-get install linux-perf)" >&2; return
  fi
  perf record -F 999 -e cpu-clock -p "$pid" -o "$tmp/$label.perf" >/dev/null 2>&1 &
  local pp=$!
  sleep 0.5
  "$@" >/dev/null
  # perf may have exited already (no permission, no perf for this kernel): never end the run.
  kill -INT "$pp" 2>/dev/null || true
  wait "$pp" || true
  if [ ! -s "$tmp/$label.perf" ]; then
    echo "perf recorded nothing for $label (perf_event_paranoid? perf for this kernel?)" >&2; return
  fi
  # awk reads the whole report: `head` would end the pipeline with SIGPIPE under pipefail.
  { perf report -i "$tmp/$label.perf" --no-children --sort dso --stdio 2>/dev/null | awk '/%/ && n++ < 3' || true
    perf report -i "$tmp/$label.perf" --no-children --sort sym --stdio 2>/dev/null | awk '/%/ && n++ < 6' || true
  } > "$out/$label.profile"
}
# save <file> <json> [cpu-seconds]: one workload's `pfai bench --json` output, with the
# server CPU it cost when measured.
save() { python3 -c 'import json,sys;v=json.loads(sys.argv[2]);v["cpu"]=float(sys.argv[3]);json.dump(v,open(sys.argv[1],"w"))' "$out/$1.json" "$2" "${3:-0}"; }

# start_pfai <label> <data-dir> -> sets PORT, PID, TOKEN; creates org/repo bench/blobs.
start_pfai() {
  PORT=$(free_port)
  PFAI_LISTEN=127.0.0.1:$PORT RUST_LOG=warn "$PFAI" serve --data-dir "$2" >"$tmp/$1.log" 2>&1 &
  PID=$!; pids+=("$PID")
  wait_http "http://127.0.0.1:$PORT/api/v1/health"
  TOKEN=$(cat "$2/initial-admin-token")
  curl -fsS -o /dev/null -X POST "http://127.0.0.1:$PORT/api/v1/orgs" -H "Authorization: Bearer $TOKEN" -d '{"name":"bench"}'
  curl -fsS -o /dev/null -X POST "http://127.0.0.1:$PORT/api/v1/forge/repos" -H "Authorization: Bearer $TOKEN" -d '{"owner":"bench","name":"blobs"}'
}

# --- the disk: what a durable write can do here. A shared virtual disk's bandwidth moves by 3x
# within minutes (1.4 GB/s, then 490 MiB/s on 2026-11-27), so pfai's monolithic pushes are
# compared with a dd measured just before each of them: dd_disk <file>.
dd_disk() {
  dd if=/dev/zero of="$tmp/dd.bin" bs=1M count="$SIZE_MIB" conv=fdatasync 2>"$tmp/dd.log"
  python3 - "$tmp/dd.log" "$SIZE_MIB" "$1" <<'PY'
import json, re, sys
line = open(sys.argv[1]).read().strip().splitlines()[-1]
secs = float(re.search(r"copied, ([0-9.]+) s", line).group(1))
json.dump({"mib_per_s": int(sys.argv[2]) / secs}, open(sys.argv[3], "w"))
PY
  rm -f "$tmp/dd.bin"
}

# run <label> <url> <token-or-empty> <pids...>: the blob and manifest workloads
run() {
  local label=$1 url=$2 tok=$3; shift 3
  local auth=(--url "$url"); [ -n "$tok" ] && auth+=(--token "$tok")
  b() { "$PFAI" bench "$@" --json; }
  local c0 c1 r conns
  # Every push starts from a flushed page cache, so one push does not pay for another's
  # writeback (on this machine's disk that alone moved chunked/monolithic from 0.4 to 0.85).
  # Monolithic and chunked alternate over $PAIRS pairs and the report takes each one's
  # median: one pair on a shared disk swings by 20% either way.
  for round in $(seq 1 "$PAIRS"); do
    [ "$label" = pfai ] && { settle; dd_disk "$out/dd-$round.json"; }
    settle; save "$label-push-$round" "$(b blobs "${auth[@]}" --size $SIZE --count 1 --pulls 0 --seed $((10 * round - 9)))"
    settle; save "$label-push-chunked-$round" "$(b blobs "${auth[@]}" --size $SIZE --count 1 --pulls 0 --seed $((10 * round - 8)) --chunk $CHUNK)"
  done
  pulls "$label" "${auth[@]}" -- "$@"
  b blobs "${auth[@]}" --size $SMALL --count 1 --pulls 0 --seed 3 >/dev/null
  c0=$(cpu_seconds "$@"); r=$(b blobs "${auth[@]}" --size $SMALL --count 1 --pulls 16 --concurrency 16 --pull-only --seed 3 --no-verify); c1=$(cpu_seconds "$@")
  save "$label-pull16" "$r" "$(python3 -c "print($c1-$c0)")"
  for conns in $CONNS; do
    save "$label-manifest-$conns" "$(b manifests "${auth[@]}" --duration $DUR --concurrency "$conns")"
  done
}
# pulls <label> <auth...> -- <pids...>: warm 1-blob pull, three times, with server CPU.
pulls() {
  local label=$1; shift
  local auth=(); while [ "$1" != "--" ]; do auth+=("$1"); shift; done; shift
  "$PFAI" bench blobs "${auth[@]}" --size $SIZE --count 1 --pulls 1 --pull-only --seed 1 --no-verify --json >/dev/null
  local c0 c1 r
  c0=$(cpu_seconds "$@"); r=$("$PFAI" bench blobs "${auth[@]}" --size $SIZE --count 1 --pulls 3 --pull-only --seed 1 --no-verify --json); c1=$(cpu_seconds "$@")
  save "$label-pull" "$r" "$(python3 -c "print($c1-$c0)")"
  if [ "$label" = pfai ]; then
    profile pfai-pull "$1" "$PFAI" bench blobs "${auth[@]}" --size $SIZE --count 1 --pulls 3 --pull-only --seed 1 --no-verify
  fi
}

# --- pfai on disk
start_pfai pfai "$tmp/pfai"
P1=$PORT; pfai_pid=$PID; pfai_token=$TOKEN
watch_rss "$pfai_pid" "$out/pfai.rss"
run pfai "http://127.0.0.1:$P1" "$pfai_token" "$pfai_pid"

# --- distribution
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
  watch_rss "$dist_pid" "$out/dist.rss"
  run dist "http://127.0.0.1:$P2" "" "$dist_pid"
  kill "$dist_pid"
else
  echo "docker-registry not installed: no distribution column (apt-get install docker-registry)" >&2
fi

# --- nginx serving the very blob pfai stores, at the URL a registry client asks for
if command -v nginx >/dev/null 2>&1; then
  digest=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["digests"][0])' "$out/pfai-pull.json")
  mkdir -p "$tmp/nginx/root/v2/bench/blobs/blobs" "$tmp/nginx/logs"
  curl -fsS -u "bench:$pfai_token" -o "$tmp/nginx/root/v2/bench/blobs/blobs/$digest" \
    "http://127.0.0.1:$P1/v2/bench/blobs/blobs/$digest"
  P3=$(free_port)
  cat > "$tmp/nginx/nginx.conf" <<CONF
user root;
worker_processes 1;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/logs/error.log error;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  types { }
  default_type application/octet-stream;
  client_body_temp_path $tmp/nginx/logs;
  proxy_temp_path $tmp/nginx/logs;
  fastcgi_temp_path $tmp/nginx/logs;
  uwsgi_temp_path $tmp/nginx/logs;
  scgi_temp_path $tmp/nginx/logs;
  server { listen 127.0.0.1:$P3; root $tmp/nginx/root; }
}
CONF
  nginx -c "$tmp/nginx/nginx.conf" -g 'daemon off;' &
  nginx_pid=$!; pids+=("$nginx_pid")
  wait_http "http://127.0.0.1:$P3/"
  workers=$(pgrep -P "$nginx_pid" | tr '\n' ' ')
  # shellcheck disable=SC2086
  pulls nginx --url "http://127.0.0.1:$P3" -- "$nginx_pid" $workers
  kill "$nginx_pid"
else
  echo "nginx not installed: no static-file ceiling (apt-get install nginx)" >&2
fi
kill "$pfai_pid"

# --- BLAKE3 against SHA-256 pushes where the disk is not the limit (tmpfs), best of three.
# Each round starts a fresh data dir, so tmpfs holds at most three blobs (see `settle`).
# The chunked SHA-256 push beside them shows what chunking costs when the disk is out of the way.
for round in 1 2 3; do
  start_pfai shm "$shm/pfai"
  # Which algorithm goes first on the fresh server alternates by round.
  algs="sha256 blake3"; [ $((round % 2)) = 0 ] && algs="blake3 sha256"
  for alg in $algs; do
    settle; save "shm-push-$alg-$round" "$("$PFAI" bench blobs --url "http://127.0.0.1:$PORT" --token "$TOKEN" \
      --size $SIZE --count 1 --pulls 0 --seed "$((100 + round))" --digest $alg --json)"
  done
  settle; save "shm-push-chunked-$round" "$("$PFAI" bench blobs --url "http://127.0.0.1:$PORT" --token "$TOKEN" \
    --size $SIZE --count 1 --pulls 0 --seed "$((200 + round))" --chunk $CHUNK --json)"
  if [ "$round" = 3 ]; then
    settle; profile shm-push "$PID" "$PFAI" bench blobs --url "http://127.0.0.1:$PORT" --token "$TOKEN" \
      --size $SIZE --count 1 --pulls 0 --seed 300
  fi
  kill "$PID"; wait "$PID" 2>/dev/null || true; rm -rf "$shm/pfai"
  keep=(); for p in "${pids[@]}"; do [ "$p" = "$PID" ] || keep+=("$p"); done
  pids=("${keep[@]}") # gone: cleanup must not signal a recycled pid
done

# --- tags: page latency as the list grows, and the memory that many tags cost
start_pfai tags "$tmp/tags"
tags_pid=$PID
from=0
for n in $TAGS; do
  save "tags-$n" "$("$PFAI" bench tags --url "http://127.0.0.1:$PORT" --token "$TOKEN" --count "$n" --from "$from" --duration 3s --concurrency 16 --json)"
  from=$n
done
awk '/^RssAnon:/{print $2}' "/proc/$tags_pid/status" > "$out/tags.rss"
awk '/^VmRSS:/{print $2}' "/proc/$tags_pid/status" > "$out/tags.vmrss"
du -sk "$tmp/tags/pfai.redb" 2>/dev/null | cut -f1 > "$out/tags.db" || true
kill "$tags_pid"
sleep 0.3

python3 - "$out" "$SIZE" "$CONNS" "$TAGS" "$PAIRS" <<'PY'
import json, os, statistics, sys
d, size, conns, tags, pairs = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4].split(), int(sys.argv[5])
def load(name):
    p = os.path.join(d, name + ".json")
    return json.load(open(p)) if os.path.exists(p) else None
def num(name):
    p = os.path.join(d, name)
    try: return int(open(p).read().strip())
    except Exception: return None
def phase(name, i=0):
    v = load(name)
    return v["phases"][i] if v and len(v["phases"]) > i else None
def mib(name, i=0):
    p = phase(name, i); return p and p["mib_per_s"]
def median_mib(name):
    v = [x for x in (mib(f"{name}-{r}") for r in range(1, pairs + 1)) if x]
    return statistics.median(v) if v else None
def spread(name):
    v = [x for x in (mib(f"{name}-{r}") for r in range(1, pairs + 1)) if x]
    return " ".join(f"{x:.0f}" for x in v)
def cpu_per_gib(name):
    v = load(name)
    if not v: return None
    gib = v["phases"][-1]["bytes"] / 2**30
    return v["cpu"] / gib if gib else None
facts = (load("pfai-push-1") or {}).get("facts", {})
print(f'machine: {facts.get("cpu_model")} x{facts.get("cpus")}, {facts.get("memory_gib", 0):.1f} GiB, '
      f'kernel {facts.get("kernel")}, load {facts.get("load_1m")} at start, {facts.get("started_at")}')
rows = []
def row(name, a, b=None, c=None):
    rows.append((name, a, b, c))
dds = [(load(f"dd-{r}") or {}).get("mib_per_s") for r in range(1, pairs + 1)]
dd = statistics.median([x for x in dds if x]) if any(dds) else None
row(f"disk dd {size} conv=fdatasync MiB/s (median; before each push: {' '.join(f'{x:.0f}' for x in dds if x)})", dd)
row(f"push {size} monolithic MiB/s (median of {pairs}: {spread('pfai-push')})", median_mib("pfai-push"), median_mib("dist-push"))
row(f"push {size} chunked MiB/s (median of {pairs}: {spread('pfai-push-chunked')})", median_mib("pfai-push-chunked"), median_mib("dist-push-chunked"))
row(f"warm pull {size} MiB/s", mib("pfai-pull", -1), mib("dist-pull", -1), mib("nginx-pull", -1))
row(f"server CPU-s per GiB pulled", cpu_per_gib("pfai-pull"), cpu_per_gib("dist-pull"), cpu_per_gib("nginx-pull"))
row(f"16 parallel pulls MiB/s", mib("pfai-pull16", -1), mib("dist-pull16", -1))
for c in conns:
    a, b = phase(f"pfai-manifest-{c}"), phase(f"dist-manifest-{c}")
    row(f"manifest GET req/s, {c} conns", a and a["requests_per_s"], b and b["requests_per_s"])
    row(f"manifest GET p99 ms, {c} conns", a and a["latency"]["p99_ms"], b and b["latency"]["p99_ms"])
best = lambda alg: max((mib(f"shm-push-{alg}-{r}") or 0) for r in (1, 2, 3)) or None
row(f"tmpfs push {size} SHA-256 MiB/s (best of 3)", best("sha256"))
row(f"tmpfs push {size} BLAKE3 MiB/s (best of 3)", best("blake3"))
row(f"tmpfs push {size} SHA-256 chunked MiB/s (best of 3)", max((mib(f"shm-push-chunked-{r}") or 0) for r in (1, 2, 3)) or None)
for n in tags:
    v = load(f"tags-{n}")
    if not v: continue
    ph = {p["phase"]: p for p in v["phases"]}
    row(f"{int(n):,} tags: tag PUT req/s", ph["tag PUT"]["requests_per_s"])
    for pos in ("first", "middle", "last"):
        p = ph[f"tags/list {pos} page"]
        row(f"{int(n):,} tags: {pos} page p50 / p99 ms", p["latency"]["p50_ms"], p["latency"]["p99_ms"])
rss = num("tags.rss"); vm = num("tags.vmrss"); db = num("tags.db")
row(f"server anonymous RSS MiB with {int(tags[-1]):,} tags", rss and rss / 1024)
row(f"server RSS MiB with {int(tags[-1]):,} tags (incl. mapped db pages)", vm and vm / 1024)
row(f"database size MiB with {int(tags[-1]):,} tags", db and db / 1024)
prss, drss = num("pfai.rss"), num("dist.rss")
row("peak anonymous RSS MiB (blob + manifest runs)", prss and prss / 1024, drss and drss / 1024)

def f(x): return "-" if x is None else (f"{x:.2f}" if isinstance(x, float) and x < 10 else (f"{x:.1f}" if isinstance(x, float) else str(x)))
w = max(len(r[0]) for r in rows)
print(f'{"figure":<{w}}  {"pfai":>10}  {"distribution":>12}  {"nginx":>8}  {"pfai/dist":>9}')
for n, a, b, c in rows:
    ratio = f"{a / b:.2f}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b and "p50 / p99" not in n else "-"
    print(f"{n:<{w}}  {f(a):>10}  {f(b):>12}  {f(c):>8}  {ratio:>9}")

print("\ngoals (issue #18), as measured in this run:")
def goal(text, value, target, higher=True):
    if value is None: print(f"  {text}: not measured"); return
    ok = value >= target if higher else value <= target
    print(f"  {text}: {value:.2f} ({'>=' if higher else '<='} {target}: {'met' if ok else 'NOT met'})")
r = lambda a, b: a / b if a and b else None
goal("chunked push / monolithic push (medians)", r(median_mib("pfai-push-chunked"), median_mib("pfai-push")), 0.8)
pairs_dd = [mib(f"pfai-push-{i}") / x for i, x in enumerate(dds, 1) if x and mib(f"pfai-push-{i}")]
goal("monolithic push / dd fdatasync just before it (median of rounds)", statistics.median(pairs_dd) if pairs_dd else None, 0.9)
if dd and best("sha256"):
    print(f"    (bound: a push to tmpfs, no disk at all, did {best('sha256'):.0f} MiB/s here: "
          f"{best('sha256') / dd:.2f} of dd; past that ratio the push is CPU-bound, not disk-bound)")
goal("warm pull / nginx sendfile", r(mib("pfai-pull", -1), mib("nginx-pull", -1)), 0.9)
goal("server CPU per GiB pulled / distribution's", r(cpu_per_gib("pfai-pull"), cpu_per_gib("dist-pull")), 0.5, higher=False)
goal("BLAKE3 push / SHA-256 push on tmpfs", r(best("blake3"), best("sha256")), 1.3)

for name, what in (("pfai-pull", f"three warm {size} pulls"), ("shm-push", f"one {size} SHA-256 push to tmpfs")):
    p = os.path.join(d, name + ".profile")
    if os.path.exists(p):
        print(f"\nwhere the pfai server's CPU went during {what} (perf, cpu-clock samples):")
        for line in open(p):
            print("  " + line.strip())
PY
