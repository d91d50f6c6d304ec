#!/bin/sh
# Runs every check and test, on a fresh Debian 12 as root: installs what the tests need (nginx,
# php8.2-fpm, python3-aiosmtpd, mcron), the pinned Deno and the locked npm packages, then
# fmt, lint, type check and the test suite. Services it finds stopped it leaves stopped.
set -eu

here=$(cd "$(dirname "$0")" && pwd -P)
root=$(dirname "$here")
cd "$root"
export RUST_BACKTRACE=0 NO_COLOR=1 DEBIAN_FRONTEND=noninteractive

[ "$(id -u)" = 0 ] || { echo "scripts/test.sh: run as root (the end-to-end tests restart php-fpm)" >&2; exit 2; }

running() { pgrep -x "$1" >/dev/null 2>&1 && echo yes || echo no; }
nginx_before=$(running nginx)
fpm_before=$(running php-fpm8.2)
# (the kernel keeps 15 characters of a process name)
am_before=$(running prometheus-aler)
haproxy_before=$(running haproxy)
etcd_before=$(running etcd)

restore() {
  # leave nginx and php-fpm as they were before this script
  [ "$nginx_before" = no ] && [ "$(running nginx)" = yes ] && service nginx stop >/dev/null 2>&1 || true
  [ "$fpm_before" = no ] && [ "$(running php-fpm8.2)" = yes ] && service php8.2-fpm stop >/dev/null 2>&1 || true
  # installing the package may start its service: the tests run their own instance
  [ "$am_before" = no ] && [ "$(running prometheus-aler)" = yes ] && service prometheus-alertmanager stop >/dev/null 2>&1 || true
  [ "$haproxy_before" = no ] && [ "$(running haproxy)" = yes ] && service haproxy stop >/dev/null 2>&1 || true
  [ "$etcd_before" = no ] && [ "$(running etcd)" = yes ] && service etcd stop >/dev/null 2>&1 || true
}
trap restore EXIT

# msmtp-mta satisfies mcron's need for an MTA without a mail daemon on port 25, and is the
# sendmail of the alert tests; openssl makes their TLS certificate; logrotate checks ours;
# systemd runs the unit's test (as a user manager: PID 1 here is not systemd)
# prometheus-alertmanager is the Alertmanager channel's, haproxy the agent-check's, etcd-server
# and etcd-client the fleet's (the tests start their own instances)
packages="nginx php8.2-fpm python3-aiosmtpd mcron msmtp-mta procps util-linux openssl logrotate systemd prometheus-alertmanager haproxy etcd-server etcd-client"
missing=""
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "== installing:$missing"
  apt-get update -q
  # shellcheck disable=SC2086
  apt-get install -y -q --no-install-recommends $missing
  # a haproxy installed here is the tests' program, not a service to start at boot
  case " $missing " in *" haproxy "*)
    update-rc.d haproxy disable >/dev/null 2>&1 || true
    systemctl disable haproxy >/dev/null 2>&1 || true ;;
  esac
fi

echo "== deno"
"$here/deno" --version
"$here/deno" install --frozen

echo "== fmt, lint, check"
"$here/deno" task fmt
"$here/deno" task lint
"$here/deno" task check

echo "== tests"
mkdir -p "$root/dist"
log="$root/dist/test-output.log"
status_file="$root/dist/test-status"
# (under set -e a plain "cmd; echo $?" would leave the group at a failing cmd, before the echo)
{ "$here/deno" task test 2>&1 && echo 0 >"$status_file" || echo $? >"$status_file"; } | tee "$log"
status=$(cat "$status_file")
# deno's summary "ok | 71 passed (40 steps) | 0 failed (20s) | 1 ignored", as the plain line CI reads
summary=$(awk -F'|' '/ passed/ && / failed/ {
  p = f = s = 0
  for (i = 1; i <= NF; i++) {
    split($i, w, " ")
    if ($i ~ / passed/) p = w[1]
    if ($i ~ / failed/) f = w[1]
    if ($i ~ / ignored/) s = w[1]
  }
  line = p " passed, " f " failed" (s ? ", " s " skipped" : "")
} END { print line }' "$log")
echo "tests: ${summary:-no summary from deno test (exit $status)}"
exit "$status"
