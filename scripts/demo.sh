#!/usr/bin/env bash
# The main job on the built-in default, the local lab: set up, bring the lab up (3 backends
# behind one HAProxy, one nginx and one Apache), review the plan, apply it, show every front
# end serving, then roll a new release out under steady load and count failed requests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cc=.venv/bin/clusterctl
export NO_COLOR=${NO_COLOR:-}

echo "== the reference inventory renders and each kind's own validator accepts it"
$cc render -i inventories/full.yaml -o out --check | tail -n 3

echo "== lab up"
$cc lab up
inv=$($cc lab up --output json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["inventory_path"])')

echo "== plan (exit 2 means changes are pending)"
rc=0; $cc plan -i "$inv" --detailed-exitcode >/dev/null || rc=$?
echo "plan exit code: $rc"

echo "== apply"
$cc apply -i "$inv" --yes

echo "== every front end serving"
for url in $($cc lab up --output json | .venv/bin/python -c 'import json,sys; print(" ".join(h["url"] for h in json.load(sys.stdin)["hosts"] if h["role"] == "frontend"))'); do
  for _ in 1 2 3; do
    printf '%s -> %s\n' "$url" "$(curl -s -m 5 -D - -o /dev/null "$url" | tr -d '\r' | grep -i '^x-backend' || echo 'no answer')"
  done
done

version="demo-$(date +%Y%m%d%H%M%S)"
echo "== rollout of $version under load (GETs and POSTs through every front end)"
$cc lab load --duration 20 > out/demo-load.txt 2>&1 &
load=$!
sleep 1
$cc rollout -i "$inv" --version "$version"
status=0; wait "$load" || status=$?
cat out/demo-load.txt
$cc status -i "$inv"
echo
echo "The lab keeps running: try clusterctl drain/restore/status/rollout on $inv."
echo "Tear it down with: $cc lab down"
exit "$status"
