#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The main job, with no TEE hardware: start the reference KBS on loopback
# (HTTPS with the test CA) holding demo resources, run the agent once with
# the sample TEE to fetch all of them in one attested session, and show what
# was fetched and how long each step took.
set -eu
cd "$(dirname "$0")/.."

echo "== building (release)"
cargo build --release --locked --quiet -p cvm-attest -p refkbs
agent=target/release/cvm-attest
kbs=target/release/refkbs

# Secrets stay in memory-backed storage when the machine has /dev/shm.
base=/dev/shm
[ -d "$base" ] && [ -w "$base" ] || base=${TMPDIR:-/tmp}
work=$(mktemp -d "$base/cvm-attest-demo.XXXXXX")
kbs_pid=
cleanup() {
  [ -n "$kbs_pid" ] && kill "$kbs_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

res="$work/resources"
mkdir -p "$res/default/luks" "$res/default/ssh" "$res/default/tls" "$res/fraud-model/dataset"
head -c 64 /dev/urandom > "$res/default/luks/root"
head -c 32 /dev/urandom > "$res/default/ssh/host-ed25519"
cp tests/data/tls/server.pem "$res/default/tls/server.pem"
head -c 32 /dev/urandom > "$res/fraud-model/dataset/transactions-key"

"$kbs" --resources "$res" --listen 127.0.0.1:0 --allow-all \
  --tls-cert tests/data/tls/server.pem --tls-key tests/data/tls/server.key \
  --url-file "$work/url" --quiet >/dev/null &
kbs_pid=$!
i=0
while [ ! -s "$work/url" ]; do
  i=$((i + 1)); [ $i -le 100 ] || { echo "reference KBS did not start" >&2; exit 1; }
  sleep 0.05
done
url=$(cat "$work/url")
echo "== reference KBS listening on $url (4 resources, allow-all policy)"

echo "== cvm-attest get (sample TEE, one attested session)"
"$agent" get --kbs "$url" --kbs-ca tests/data/tls/ca.pem --tee sample \
  default/luks/root default/ssh/host-ed25519 default/tls/server.pem \
  kbs:///fraud-model/dataset/transactions-key --output "$work/out"

echo "== fetched (mode, size, identical to what the KBS holds)"
status=0
for f in default/luks/root default/ssh/host-ed25519 default/tls/server.pem fraud-model/dataset/transactions-key; do
  if cmp -s "$res/$f" "$work/out/$f"; then same=identical; else same=DIFFERENT; status=1; fi
  printf '  %-40s %s %5s bytes  %s\n' "$f" "$(stat -c %a "$work/out/$f")" "$(stat -c %s "$work/out/$f")" "$same"
done
exit $status
