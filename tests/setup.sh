#!/usr/bin/env bash
# What the tests need, set up: the first step of the README's test command,
#
#   bash tests/setup.sh && .venv/bin/ruff check . && .venv/bin/lint-imports && .venv/bin/mypy && .venv/bin/python -m pytest
#
# Run as root on Debian (as CI does), it installs the Debian packages that some tests drive for
# real: Chromium (browser tests), PgBouncer (pooling), Slurm and munge (a private cluster),
# iproute2 (network namespaces for the partition tests), podman with Debian's docker-compose and
# mmdebstrap (the compose stack built and run as containers). Without root it installs nothing and
# says which tests will skip and why. The tests also use the local PostgreSQL (127.0.0.1:5432)
# and MariaDB (127.0.0.1:3306); under CI=true every one of them must run.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian package, and a file it installs that shows it is there.
packages=(
  "chromium:/usr/bin/chromium:tests/test_browser.py (figures in a headless browser)"
  "pgbouncer:/usr/sbin/pgbouncer:tests/test_pooling.py (PgBouncer in front of PostgreSQL)"
  "slurm-wlm:/usr/sbin/slurmctld:tests/test_slurm.py (a private Slurm cluster)"
  "munge:/usr/sbin/munged:tests/test_slurm.py (Slurm's authentication)"
  "iproute2:/usr/sbin/tc:tests/test_partition.py (nodes cut off from the network)"
  "podman:/usr/bin/podman:tests/test_containers.py (the compose stack as containers)"
  "runc:/usr/sbin/runc:tests/test_containers.py (podman's runtime here)"
  "netavark:/usr/lib/podman/netavark:tests/test_containers.py (podman's networks)"
  "aardvark-dns:/usr/lib/podman/aardvark-dns:tests/test_containers.py (service names)"
  "catatonit:/usr/bin/catatonit:tests/test_containers.py (podman's init)"
  "iptables:/usr/sbin/iptables:tests/test_containers.py (published ports)"
  "fuse-overlayfs:/usr/bin/fuse-overlayfs:tests/test_containers.py (podman's storage)"
  "uidmap:/usr/bin/newuidmap:tests/test_containers.py (podman's user namespaces)"
  "slirp4netns:/usr/bin/slirp4netns:tests/test_containers.py (podman's networks)"
  "mmdebstrap:/usr/bin/mmdebstrap:tests/test_containers.py (stand-in base images)"
  "docker-compose:/usr/bin/docker-compose:tests/test_containers.py (Compose 1.29)"
)
missing=()
for entry in "${packages[@]}"; do
  IFS=: read -r package file _ <<<"$entry"
  [ -e "$file" ] || missing+=("$package")
done

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "tests/setup.sh: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null; }
  else
    echo "tests/setup.sh: not root (or no apt-get): these will skip (and fail under CI=true):"
    for entry in "${packages[@]}"; do
      IFS=: read -r package file tests <<<"$entry"
      [ -e "$file" ] || echo "  $tests: needs Debian's $package"
    done
  fi
fi
if [ "$(id -u)" != 0 ]; then
  echo "tests/setup.sh: not root: tests/test_slurm.py and tests/test_partition.py will skip" \
    "(they start Slurm's daemons and make network namespaces)"
fi

python3 -m venv .venv
.venv/bin/pip install -q -e '.[test]'
