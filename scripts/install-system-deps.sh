#!/usr/bin/env bash
# System packages the tests need (Debian/Ubuntu). Idempotent: a fast no-op when all are present.
# As root it installs what is missing; otherwise it lists it and the command to run.
set -euo pipefail

PACKAGES=(
  redis-server                      # a real Redis for alert delivery tests (also ACL and TLS)
  prometheus                        # a real Prometheus runs the Grafana dashboard's queries
  openssl                           # certificates for the TLS test
  python3-gi python3-gst-1.0 gir1.2-gst-rtsp-server-1.0   # GStreamer's RTSP server from /usr/bin/python3
  gstreamer1.0-rtsp gstreamer1.0-tools
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
  libportaudio2 pulseaudio libasound2-plugins   # microphones: PortAudio -> ALSA pulse plugin -> PulseAudio sine source
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${missing[*]}" >&2
  echo "install them with: sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "installed: ${missing[*]}"
