#!/usr/bin/env bash
# Installs and starts what the tests need beyond Deno: ffmpeg/ffprobe, promtool (checks the alert
# rules), systemd-analyze (verifies the unit file), docker-compose (checks compose.yaml against
# compose's schema; no Docker engine needed), GStreamer's RTSP server with Python bindings
# (tests/rtsp_server.py), Debian's chromium (the console's browser test), and RabbitMQ on
# 127.0.0.1:5672, and PostgreSQL on 127.0.0.1:5432.
set -euo pipefail
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
updated=""
install() {
  [ -n "$updated" ] || { $SUDO apt-get update -qq; updated=1; }
  echo "tests/setup.sh: installing $* (apt-get)" >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

if ! { command -v ffprobe >/dev/null && { command -v ffmpeg >/dev/null || [ -x "${FFMPEG_PATH:-}" ]; }; }; then
  install ffmpeg
fi

command -v promtool >/dev/null || install prometheus
command -v systemd-analyze >/dev/null || install systemd
command -v docker-compose >/dev/null || install docker-compose

[ -x /usr/bin/chromium ] || install chromium

rtsp_server_ready() {
  /usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer" 2>/dev/null &&
    gst-inspect-1.0 qtdemux >/dev/null 2>&1 && gst-inspect-1.0 rtph264pay >/dev/null 2>&1 &&
    gst-inspect-1.0 h264parse >/dev/null 2>&1
}
rtsp_server_ready || install python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-tools \
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad

broker_up() { (echo > /dev/tcp/127.0.0.1/5672) >/dev/null 2>&1; }
if ! broker_up; then
  command -v rabbitmq-server >/dev/null || install rabbitmq-server
  echo "tests/setup.sh: starting RabbitMQ" >&2
  $SUDO rabbitmq-server -detached >/dev/null 2>&1 || true
  for _ in $(seq 1 90); do broker_up && break; sleep 1; done
  broker_up || { echo "tests/setup.sh: RabbitMQ did not start on 127.0.0.1:5672" >&2; exit 1; }
fi

# PostgreSQL on 127.0.0.1:5432 with trust auth and a database `test` (a fleet's index; each test
# makes a schema of its own in it).
pg_up() { psql "postgres://postgres@127.0.0.1:5432/test" -qtAc "select 1" >/dev/null 2>&1; }
if ! pg_up; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    install postgresql
    conf=$(ls -d /etc/postgresql/*/main | head -1)
    # Tests connect as postgres over TCP without a password: trust on loopback only.
    $SUDO sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$conf/pg_hba.conf"
  fi
  echo "tests/setup.sh: starting PostgreSQL" >&2
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start >/dev/null 2>&1 || true
  for _ in $(seq 1 60); do psql "postgres://postgres@127.0.0.1:5432/postgres" -qtAc "select 1" >/dev/null 2>&1 && break; sleep 1; done
  psql "postgres://postgres@127.0.0.1:5432/postgres" -qtAc "select 1 from pg_database where datname = 'test'" | grep -q 1 ||
    psql "postgres://postgres@127.0.0.1:5432/postgres" -qc "create database test" >/dev/null
  pg_up || { echo "tests/setup.sh: PostgreSQL did not start on 127.0.0.1:5432 with a database test" >&2; exit 1; }
fi
