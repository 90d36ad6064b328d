#!/usr/bin/env bash
# SLURM for tests/cli/test_cluster_slurm.py: a single-node slurmctld + slurmd authenticated by munge,
# started by the test's fixture on loopback. Idempotent; runs as root on CI (Debian).
set -u
packages=(slurmctld slurmd slurm-client munge)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "slurm.sh: cannot install ${missing[*]} (needs root and apt-get); the SLURM test will skip"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; then
  echo "slurm.sh: apt-get could not install ${missing[*]}; the SLURM test will skip"
fi
# Debian's packages start no daemons in a container; the test fixture starts its own on loopback.
exit 0
