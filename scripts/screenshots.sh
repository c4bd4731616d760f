#!/usr/bin/env bash
# Refresh the portal screenshots in docs/screenshots/ from the browser tests (a plain test run writes its
# screenshots to a temporary folder and leaves the tracked pictures alone). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
GOVERNANCE_SCREENSHOTS_DIR="$PWD/docs/screenshots" exec ./scripts/test.sh tests/e2e "$@"
