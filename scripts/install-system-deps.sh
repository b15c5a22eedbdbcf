#!/usr/bin/env bash
# System packages that the tests, the demo and the RTSP test server need (Debian 12 / Ubuntu).
# Idempotent and a fast no-op when everything is there (one dpkg-query, no network).
# As root: one `apt-get update`, then installs only what is missing.
# Otherwise: lists exactly what is missing and the command to run, and exits 1.
set -euo pipefail

PACKAGES=(
  python3-venv                      # make venv (python3 -m venv)
  redis-server                      # a real Redis for alert delivery tests (also ACL and TLS)
  openssl                           # certificates for the Redis TLS test
  prometheus                        # a real Prometheus runs the Grafana dashboard's queries
  libgl1                            # OpenCV's shared libraries
  # GStreamer's RTSP server, run by /usr/bin/python3 (tests/rtsp_server.py): no re-encoding
  python3-gi python3-gst-1.0 gir1.2-gst-rtsp-server-1.0
  gstreamer1.0-rtsp gstreamer1.0-tools
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
  gstreamer1.0-libav
  # microphones: PortAudio (sounddevice) -> ALSA's pulse plugin -> PulseAudio's sine source
  libportaudio2 pulseaudio libasound2-plugins
  chromium                          # the status page in a real headless browser (tests/test_http.py, DevTools protocol)
)

# the packages of PACKAGES not installed, one dpkg-query for all (unknown names are simply not listed)
not_installed() {
  local installed
  installed=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "$@" 2>/dev/null | awk '$2 == "installed" {print $1}' || true)
  for p in "$@"; do
    grep -qxF "$p" <<<"$installed" || echo "$p"
  done
}

mapfile -t missing < <(not_installed "${PACKAGES[@]}")
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  {
    echo "missing system packages (${#missing[@]}): ${missing[*]}"
    echo "install them with:"
    echo "  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
  } >&2
  exit 1
fi

echo "installing system packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
mapfile -t still < <(not_installed "${missing[@]}")
if [ ${#still[@]} -ne 0 ]; then
  echo "apt-get did not install: ${still[*]}" >&2
  exit 1
fi
echo "installed: ${missing[*]}" >&2
