#!/usr/bin/env bash
# Blob push and pull with one client (`pfai bench blobs`) against, side by side in one run:
# pfai on local disk, pfai on a three-node Garage cluster (`--storage s3`, every node on this
# machine, replication factor 3), the same with `--s3-redirect` (pulls go to Garage), and
# Debian's docker-registry (CNCF distribution 2.8) on local disk. Issue #17's numbers.
#
#   bash benches/garage.sh            # 256 MiB blobs
#   QUICK=1 bash benches/garage.sh    # small sizes, to check the script itself
#
# Needs a garage binary (PFAI_GARAGE or PATH; `.ci/run` builds one into
# ~/.cache/pfai-ci/garage), python3, curl; docker-registry for its column. One machine cannot
# show what a cluster adds (its nodes share these two cores and this disk): read the figures
# as what the object-store path costs, not as what a cluster of machines can do.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
PFAI="$PWD/target/release/pfai"
GARAGE=${PFAI_GARAGE:-$(command -v garage || true)}
[ -x "$GARAGE" ] || { echo "no garage binary: set PFAI_GARAGE" >&2; exit 1; }
tmp=$(mktemp -d -p "${BENCH_DIR:-/var/tmp}" pfai-garage.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

SIZE=256MiB; COUNT=2; PULLS=4; PAR=16
[ -n "${QUICK:-}" ] && { SIZE=8MiB; COUNT=1; PULLS=1; PAR=4; }
KEY_ID=GK0123456789abcdef01234567
SECRET=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
RPC_SECRET=$(python3 -c 'import secrets;print(secrets.token_hex(32))')

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 200); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no server at $1" >&2; exit 1; }
settle() { sync; sleep 2; }

# --- a three-node Garage cluster
s3_port=
for i in 0 1 2; do
  root="$tmp/garage$i"; mkdir -p "$root"
  rpc=$(free_port); s3=$(free_port); admin=$(free_port)
  [ -z "$s3_port" ] && s3_port=$s3
  cat > "$root/garage.toml" <<TOML
metadata_dir = "$root/meta"
data_dir = "$root/data"
db_engine = "lmdb"
replication_factor = 3
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$RPC_SECRET"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin"
TOML
  RUST_LOG=warn "$GARAGE" -c "$root/garage.toml" server >"$root/log" 2>&1 &
  pids+=("$!")
done
g() { "$GARAGE" -c "$tmp/garage$1/garage.toml" "${@:2}"; }
for i in 0 1 2; do for _ in $(seq 1 240); do g $i status >/dev/null 2>&1 && break; sleep 0.25; done; done
ids=(); for i in 0 1 2; do ids+=("$(g $i node id -q)"); done
g 0 node connect "${ids[1]}" >/dev/null; g 0 node connect "${ids[2]}" >/dev/null
for id in "${ids[@]}"; do g 0 layout assign -z dc1 -c 10G "${id%%@*}" >/dev/null; done
g 0 layout apply --version 1 >/dev/null
g 0 key import --yes -n pfai "$KEY_ID" "$SECRET" >/dev/null
g 0 bucket create pfai >/dev/null
g 0 bucket allow --read --write --owner pfai --key "$KEY_ID" >/dev/null
printf 'aws_access_key_id = %s\naws_secret_access_key = %s\n' "$KEY_ID" "$SECRET" > "$tmp/s3-credentials"
chmod 600 "$tmp/s3-credentials"

# start_pfai <label> <args...> -> URL, TOKEN; org/repo bench/blobs. Retries while the
# cluster's layout settles (pfai checks the bucket at start).
start_pfai() {
  local label=$1; shift
  local port; port=$(free_port)
  for _ in $(seq 1 30); do
    PFAI_LISTEN=127.0.0.1:$port RUST_LOG=warn "$PFAI" serve --data-dir "$tmp/$label" "$@" >"$tmp/$label.log" 2>&1 &
    local pid=$!
    sleep 0.5
    if kill -0 "$pid" 2>/dev/null; then pids+=("$pid"); break; fi
    sleep 1
  done
  wait_http "http://127.0.0.1:$port/api/v1/health"
  URL="http://127.0.0.1:$port"; TOKEN=$(cat "$tmp/$label/initial-admin-token")
  curl -fsS -o /dev/null -X POST "$URL/api/v1/orgs" -H "Authorization: Bearer $TOKEN" -d '{"name":"bench"}'
  curl -fsS -o /dev/null -X POST "$URL/api/v1/forge/repos" -H "Authorization: Bearer $TOKEN" -d '{"owner":"bench","name":"blobs"}'
}

s3args=(--storage s3 --s3-endpoint "http://127.0.0.1:$s3_port" --s3-bucket pfai --s3-region garage
  --s3-path-style --s3-credentials-file "$tmp/s3-credentials")
results="$tmp/results"; mkdir -p "$results"
# measure <label> <url> <token-or-empty>: push, cold-ish pull (first read), warm pulls, parallel pulls
measure() {
  local label=$1 url=$2 tok=$3
  local auth=(--url "$url"); [ -n "$tok" ] && auth+=(--token "$tok")
  settle
  "$PFAI" bench blobs "${auth[@]}" --size $SIZE --count $COUNT --pulls $PULLS --seed 7 --json > "$results/$label.json"
  "$PFAI" bench blobs "${auth[@]}" --size 64MiB --count 1 --pulls 0 --seed 9 >/dev/null
  "$PFAI" bench blobs "${auth[@]}" --size 64MiB --count 1 --pulls $PAR --concurrency $PAR --pull-only --seed 9 --json > "$results/$label-par.json"
}

start_pfai local
measure local "$URL" "$TOKEN"
start_pfai garage "${s3args[@]}" --s3-prefix plain
measure garage "$URL" "$TOKEN"
start_pfai garage-redirect "${s3args[@]}" --s3-prefix redirect --s3-redirect
measure garage-redirect "$URL" "$TOKEN"
if command -v docker-registry >/dev/null 2>&1; then
  P=$(free_port)
  cat > "$tmp/dist.yml" <<YML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $tmp/dist}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$P}
YML
  docker-registry serve "$tmp/dist.yml" >/dev/null 2>&1 &
  pids+=("$!")
  wait_http "http://127.0.0.1:$P/v2/"
  measure dist "http://127.0.0.1:$P" ""
fi

python3 - "$results" "$SIZE" "$PAR" <<'PY'
import json, os, sys
d, size, par = sys.argv[1], sys.argv[2], sys.argv[3]
def load(n):
    p = os.path.join(d, n + ".json")
    return json.load(open(p)) if os.path.exists(p) else None
cols = ["local", "garage", "garage-redirect", "dist"]
names = {"local": "pfai local", "garage": "pfai on Garage", "garage-redirect": "Garage + redirect", "dist": "distribution"}
facts = (load("local") or {}).get("facts", {})
print(f'machine: {facts.get("cpu_model")} x{facts.get("cpus")}, load {facts.get("load_1m")} at start, {facts.get("started_at")}')
def mib(n, phase):
    v = load(n)
    if not v: return None
    for p in v["phases"]:
        if p["phase"] == phase: return p["mib_per_s"]
    return None
rows = [(f"push {size} (MiB/s)", lambda c: mib(c, "push")),
        (f"pull {size} (MiB/s)", lambda c: mib(c, "pull")),
        (f"{par} parallel pulls of 64 MiB (MiB/s)", lambda c: mib(c + "-par", "pull"))]
print(f'{"figure":<36}' + "".join(f"{names[c]:>20}" for c in cols) + f'{"garage/local":>14}')
for name, f in rows:
    vals = [f(c) for c in cols]
    ratio = f"{vals[1] / vals[0]:.2f}" if vals[0] and vals[1] else "-"
    print(f"{name:<36}" + "".join(f"{(f'{v:.0f}' if v else '-'):>20}" for v in vals) + f"{ratio:>14}")
PY
