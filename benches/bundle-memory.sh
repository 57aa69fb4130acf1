#!/usr/bin/env bash
# Peak anonymous RSS of the server while it exports, and another while it imports, an air-gap
# bundle holding a 1 GiB release asset: both stream, so neither grows with the bundle (issue #16).
#   bash benches/bundle-memory.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
P="$PWD/target/release/pfai"
d=$(mktemp -d -p /var/tmp bm.XXXX); trap "pkill -f \"data-dir $d\"; rm -rf $d" EXIT
start() { PFAI_LISTEN=127.0.0.1:$2 RUST_LOG=warn $P serve --data-dir $d/$1 >$d/$1.log 2>&1 & echo $!; }
pa=$(start a ${PORT_A:-3921}); pb=$(start b ${PORT_B:-3922}); sleep 2
TA=$(cat $d/a/initial-admin-token); TB=$(cat $d/b/initial-admin-token)
A=http://127.0.0.1:${PORT_A:-3921}; B=http://127.0.0.1:${PORT_B:-3922}
for u in $A:$TA $B:$TB; do url=${u%:*}; t=${u##*:}; curl -fsS -o /dev/null -X POST $url/api/v1/orgs -H "Authorization: Bearer $t" -d '{"name":"acme"}'; done
curl -fsS -o /dev/null -X POST $A/api/v1/forge/repos -H "Authorization: Bearer $TA" -d '{"owner":"acme","name":"app"}'
w=$d/wc; git init -q $w; git -C $w -c user.name=t -c user.email=t@e commit -q --allow-empty -m one; git -C $w tag v1
git -C $w push -q "http://admin:$TA@127.0.0.1:${PORT_A:-3921}/acme/app.git" HEAD:refs/heads/main v1
curl -fsS -o /dev/null -X POST $A/api/v1/forge/acme/app/releases -H "Authorization: Bearer $TA" -d '{"tagName":"v1","name":"v1"}'
head -c 1073741824 /dev/urandom > $d/big.bin
curl -fsS -o /dev/null -X POST "$A/api/v1/forge/acme/app/releases/v1/assets" -H "Authorization: Bearer $TA" -F "file=@$d/big.bin"
peak() { local pid=$1 f=$2; ( p=0; while [ -e /proc/$pid ]; do v=$(awk '/^RssAnon:/{print $2}' /proc/$pid/status 2>/dev/null || echo 0); [ "${v:-0}" -gt $p ] && p=$v && echo $p > $f; sleep 0.05; done ) & }
echo 0 > $d/base.a; awk '/^RssAnon:/{print $2}' /proc/$pa/status > $d/base.a
peak $pa $d/peak.a
PFAI_URL=$A PFAI_TOKEN=$TA $P bundle export --repo acme/app -o $d/x.tar
echo "export: bundle $(du -m $d/x.tar | cut -f1) MiB; server A anon RSS before $(cat $d/base.a) KiB, peak $(cat $d/peak.a) KiB"
awk '/^RssAnon:/{print $2}' /proc/$pb/status > $d/base.b
peak $pb $d/peak.b
PFAI_URL=$B PFAI_TOKEN=$TB $P bundle import $d/x.tar | tail -2
echo "import: server B anon RSS before $(cat $d/base.b) KiB, peak $(cat $d/peak.b) KiB"
