#!/usr/bin/env bash
# The test command: installs what the tests need, builds, and runs every test on Node 24.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec npm test -- "$@"
