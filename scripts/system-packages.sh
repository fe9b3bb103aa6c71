#!/usr/bin/env bash
# Debian packages the project needs beyond Python: Chromium for the browser tests,
# Pango for WeasyPrint, fonts for the PDFs (FreeSans for the signature stamp), poppler's pdfsig
# and NSS's certutil to check report signatures. Installs only what is missing.
set -euo pipefail
packages=(chromium chromium-driver libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core fonts-freefont-otf poppler-utils libnss3-tools)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
echo "Installing Debian packages: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
