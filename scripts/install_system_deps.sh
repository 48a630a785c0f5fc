#!/usr/bin/env bash
# Debian packages the test suite uses: ffmpeg/ffprobe for the media pipeline tests.
# Idempotent; apt-get needs root. Says what it did.
set -euo pipefail
if command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1; then
    echo "ffmpeg already installed: $(command -v ffmpeg)"
    exit 0
fi
echo "installing Debian's ffmpeg"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null
command -v ffmpeg && command -v ffprobe
