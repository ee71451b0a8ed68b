#!/bin/sh
# Installs the Debian packages wsgate needs, and only those missing.
#   scripts/install-deps.sh build   compiler, libraries, and the example backend
#   scripts/install-deps.sh test    all of the above plus the test tools
#   scripts/install-deps.sh bench   build, plus nginx, HAProxy and gnuplot
set -eu

profile=${1:-build}

build_pkgs="gcc make pkg-config meson ninja-build libuv1-dev libhttp-parser-dev libssl-dev
libjansson-dev python3 python3-websockets"
test_pkgs="libcmocka-dev python3-pytest python3-pytest-timeout python3-pytest-xdist
python3-requests python3-prometheus-client clang libclang-rt-14-dev procps openssl chromium
cppcheck clang-tidy valgrind"

# The benchmark runs the proxies wsgate is measured against.
bench_pkgs="nginx haproxy gnuplot-nox procps"

case "$profile" in
build) wanted=$build_pkgs ;;
test) wanted="$build_pkgs $test_pkgs" ;;
bench) wanted="$build_pkgs $bench_pkgs" ;;
*) echo "usage: $0 build|test|bench" >&2; exit 2 ;;
esac

missing=""
for pkg in $wanted; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $pkg"
    fi
done
# The dashboard's browser test runs playwright-core under node. A node
# installed some other way (nodesource bundles npm) is as good as Debian's.
if [ "$profile" = test ] && ! command -v npm >/dev/null 2>&1; then
    missing="$missing nodejs npm"
fi
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
else
    echo "wsgate: these Debian packages are missing:$missing" >&2
    echo "wsgate: install them as root (apt-get install$missing), or install sudo" >&2
    exit 1
fi

echo "wsgate: installing Debian packages:$missing"
export DEBIAN_FRONTEND=noninteractive
# A fresh machine may have no package lists yet: update only when needed.
# shellcheck disable=SC2086
if ! $sudo apt-get install -y -q --no-install-recommends $missing; then
    $sudo apt-get update -q
    $sudo apt-get install -y -q --no-install-recommends $missing
fi
