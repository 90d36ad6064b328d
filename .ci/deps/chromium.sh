#!/usr/bin/env bash
# Headless Chromium + chromedriver for tests/cli/test_review_browser.py (Selenium drives the review page).
# Debian packages only: nothing is downloaded at test time. Idempotent; runs as root on CI (Debian).
set -u
packages=(chromium chromium-driver)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "chromium.sh: cannot install ${missing[*]} (needs root and apt-get); the browser test will skip"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; then
  echo "chromium.sh: apt-get could not install ${missing[*]}; the browser test will skip"
fi
exit 0
