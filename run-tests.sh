#!/usr/bin/env bash
# Run l2tproute's test suite on this machine, from nothing: the README's test command,
# and what .ci/run runs. As root (the tests make network namespaces and drive the
# installed command through sudo, as the panel does).
#
#   ./run-tests.sh [--quick] [PYTEST ARGS...]     (as root)
#
# --quick: the quick tier, every module and front once, the slow tests left out
# (pytest -m "not slow"; tests/conftest.py SLOW names them); a few minutes. Without it,
# everything (docs/testing.md says which to run when).
#
# 1. the distribution packages the tests use for real: iproute2, Debian's ppp
#    dispatcher, sudo, php-cli (the panel), bird2 and frr (BGP export), systemd
#    (systemd-analyze verify), cron (the re-apply where systemd is not running, run
#    by a real cron daemon in the tests), strace, psmisc, util-linux, and debootstrap
#    with systemd-container (tests/system/test_systemd.py boots Debian with systemd as
#    PID 1; its root filesystem is built once per machine in /var/cache/l2tproute-tests);
# 2. the tool itself, through the installer (a second run changes nothing);
# 3. the Python test dependencies in a venv of their own, .venv-tests/ in this
#    checkout (the system's python3 is left alone: Debian's refuses pip installs);
# 4. pytest, from that venv.
set -Eeuo pipefail
cd "$(dirname "$0")"

die() { echo "run-tests.sh: error: $*" >&2; exit 1; }
tier=()
if [[ ${1:-} == --quick ]]; then tier=(-m "not slow"); shift; fi
[[ $(id -u) -eq 0 ]] || die "run it as root: the tests create network namespaces and install the tool"
command -v apt-get >/dev/null || die "this script needs Debian or Ubuntu (apt-get)"

export DEBIAN_FRONTEND=noninteractive
echo "run-tests.sh: installing the packages the tests use ..."
apt-get update -qq
# frr is only for the BGP export test, which runs its own zebra/bgpd in namespaces:
# keep the package's service from starting on this machine (policy-rc.d exit 101).
# An admin's own policy-rc.d is put back as it was.
policy=/usr/sbin/policy-rc.d
saved=""
if [[ -e $policy ]]; then saved=$(mktemp) && cp -a -- "$policy" "$saved"; fi
restore_policy() { if [[ -n $saved ]]; then mv -f -- "$saved" "$policy"; else rm -f -- "$policy"; fi; }
trap restore_policy EXIT
printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy"
apt-get install -y -qq --no-install-recommends \
    iproute2 ppp sudo php-cli bird2 frr systemd cron python3 python3-venv procps psmisc strace util-linux \
    debootstrap debian-archive-keyring systemd-container openvpn openssl iputils-ping >/dev/null
restore_policy
trap - EXIT

./install-l2tp-per-user-routing.sh

venv=.venv-tests
if [[ ! -x $venv/bin/python ]]; then
    echo "run-tests.sh: creating $venv (the test dependencies) ..."
    python3 -m venv "$venv"
fi
echo "run-tests.sh: installing this checkout and its test dependencies into $venv ..."
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]' atheris

exec "$venv/bin/python" -m pytest -q -p no:cacheprovider --durations=15 "${tier[@]}" "$@"
