#!/usr/bin/env bash
# Installs what the tests need beyond Deno: ffmpeg and ffprobe (Debian's package), once.
set -euo pipefail
if command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null; then exit 0; fi
if [ -n "${FFMPEG_PATH:-}" ] && [ -x "$FFMPEG_PATH" ] && command -v ffprobe >/dev/null; then exit 0; fi
echo "tests/setup.sh: installing ffmpeg (apt-get)" >&2
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq ffmpeg >/dev/null
