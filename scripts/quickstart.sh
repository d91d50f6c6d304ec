#!/bin/sh
# Sets up a local nginx + php-fpm with this repo's heartbeat samples and runs the watchdog
# against it for one minute, showing every probe. Debian 12, as root.
set -eu

here=$(cd "$(dirname "$0")" && pwd -P)
root=$(dirname "$here")
cd "$root"
export DEBIAN_FRONTEND=noninteractive RUST_BACKTRACE=0
url=http://127.0.0.1:8889/php-heartbeat.php

[ "$(id -u)" = 0 ] || { echo "quickstart: run as root" >&2; exit 2; }

if ! command -v nginx >/dev/null 2>&1 || ! ls /usr/sbin/php-fpm* >/dev/null 2>&1; then
  echo "== installing nginx and php8.2-fpm"
  apt-get update -q
  apt-get install -y -q --no-install-recommends nginx php8.2-fpm
fi

echo "== the pinned Deno and the locked packages"
"$here/deno" --version
"$here/deno" install --frozen

echo "== starting php-fpm and nginx"
for fpm in /etc/init.d/php*-fpm; do
  name=$(basename "$fpm")
  pgrep -x "$(echo "$name" | sed 's/^php\([0-9.]*\)-fpm$/php-fpm\1/')" >/dev/null || service "$name" start
done
pgrep -x nginx >/dev/null || service nginx start

echo "== heartbeat samples"
"$here/samples.sh" install

echo "== php-relaunch check-config $url 5 ''"
"$here/deno" task -q start check-config "$url" 5 ''
echo "== php-relaunch --once $url 5 ''"
"$here/deno" task -q start --once "$url" 5 '' || true
echo "== php-relaunch $url 5 '' --verbose   (one minute, as cron would run it; Ctrl-C to stop)"
echo "   try from another shell: pkill -KILL -x php-fpm8.2, or pkill -STOP -x php-fpm8.2"
exec "$here/deno" task -q start --verbose "$url" 5 ''
