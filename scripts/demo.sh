#!/usr/bin/env bash
# The main job on the built-in default: validate the reference inventory, render every front
# end's files and check each with the real haproxy, nginx and apache2.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/clusterctl validate -i inventories/full.yaml
.venv/bin/clusterctl render -i inventories/full.yaml -o out --check
