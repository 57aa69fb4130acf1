#!/usr/bin/env bash
# Writes data-fixtures/upgrade/schema-1.tar.gz: a data directory made by pfai at schema 1 (commit
# 5ec447e, the last release before schema 2). Kept for the record; the committed directory is
# what the upgrade test opens. Usage: make-schema-1.sh PATH-TO-OLD-PFAI-BINARY
set -euo pipefail
pfai=$1
here=$(cd "$(dirname "$0")" && pwd)
out="$here/schema-1"
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
rm -rf "$out"
port=39517
"$pfai" serve --data-dir "$out" --listen 127.0.0.1:$port >"$work/log" 2>&1 &
pid=$!
for _ in $(seq 50); do curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
url=http://127.0.0.1:$port
admin=$(cat "$out/initial-admin-token")
auth="Authorization: Bearer $admin"
curl -fsS -X POST "$url/api/v1/orgs" -H "$auth" -d '{"name":"acme"}' >/dev/null
curl -fsS -X POST "$url/api/v1/forge/repos" -H "$auth" -d '{"owner":"acme","name":"app","private":true}' >/dev/null
curl -fsS -X POST "$url/api/v1/admin/users" -H "$auth" \
  -d '{"username":"alice","password":"correct horse battery","email":"alice@example.com"}' >/dev/null
alice=$(curl -fsS -X POST "$url/api/v1/user/tokens" -u 'alice:correct horse battery' -d '{"name":"ci"}' \
  | sed -E 's/.*"token":"([^"]+)".*/\1/')
curl -fsS -X PUT "$url/api/v1/forge/acme/app/collaborators/alice" -H "$auth" -d '{"role":"write"}' >/dev/null
git init -q -b main "$work/app"
git -C "$work/app" -c user.name=Fixture -c user.email=f@example.com commit -q --allow-empty -m "first commit"
git -C "$work/app" -c user.name=Fixture -c user.email=f@example.com tag -a v1.0.0 -m "v1.0.0"
git -C "$work/app" push -q "http://x:$admin@127.0.0.1:$port/acme/app.git" main v1.0.0
curl -fsS -X POST "$url/api/v1/forge/acme/app/tag-protections" -H "$auth" -d '{"pattern":"v*"}' >/dev/null
curl -fsS -X POST "$url/api/v1/forge/acme/app/releases" -H "$auth" \
  -d '{"tagName":"v1.0.0","name":"One","body":"First release","prerelease":false}' >/dev/null
printf 'schema-1 asset bytes\n' >"$work/hello.txt"
curl -fsS -X POST "$url/api/v1/forge/acme/app/releases/v1.0.0/assets" -H "$auth" -F "file=@$work/hello.txt" >/dev/null
skopeo copy -q --dest-tls-verify=false --dest-creds "x:$admin" \
  "oci:$here/../oci/layout-single:v1" "docker://127.0.0.1:$port/acme/app/web:1.0"
echo "$alice" >"$out/alice-token"
kill -TERM $pid; wait $pid || true
rm -rf "$out/uploads"
# git keeps no empty directories (a bare repository needs refs/), so the fixture is a tarball.
tar -C "$here" --sort=name --owner=0 --group=0 --numeric-owner --mtime='2026-11-26 00:00Z' \
  -czf "$here/schema-1.tar.gz" schema-1
rm -rf "$out"
echo "wrote $here/schema-1.tar.gz"
