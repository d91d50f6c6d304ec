#!/bin/sh
# Installs (or removes) this repo's heartbeat samples into Debian's nginx layout:
#   /var/www/php-heartbeat/php-heartbeat.php          the heartbeat page
#   /etc/nginx/conf.d/heartbeat_allowed.conf          who may probe (http level)
#   /etc/nginx/sites-available/php-heartbeat          the vhost on 127.0.0.1:8889 and [::1]:8889
#   /etc/nginx/sites-enabled/php-heartbeat            -> ../sites-available/php-heartbeat
#   /usr/local/share/php-relaunch/php-relaunch-opcache.php  OPcache's status, read over FastCGI
#                                                     (root's, 0644, outside every docroot)
# The vhost's fastcgi_pass is set to the listen socket of the installed php-fpm's www pool.
# Usage: scripts/samples.sh install|uninstall|status. Needs root. Reloads nginx if it runs.
set -eu

here=$(cd "$(dirname "$0")" && pwd -P)
root=$(dirname "$here")
www=/var/www/php-heartbeat
page=$www/php-heartbeat.php
allow=/etc/nginx/conf.d/heartbeat_allowed.conf
site=/etc/nginx/sites-available/php-heartbeat
link=/etc/nginx/sites-enabled/php-heartbeat
share=/usr/local/share/php-relaunch
opcache=$share/php-relaunch-opcache.php

die() { echo "samples.sh: $*" >&2; exit 1; }

fpm_socket() {
  # the first www pool's `listen = ...` of the installed PHP versions (newest first)
  for conf in $(ls -r /etc/php/*/fpm/pool.d/www.conf 2>/dev/null); do
    sock=$(sed -n 's/^[[:space:]]*listen[[:space:]]*=[[:space:]]*\([^[:space:];]*\).*/\1/p' "$conf" | head -n 1)
    if [ -n "$sock" ]; then
      case "$sock" in
        /*) echo "unix:$sock" ;;
        *) echo "$sock" ;;
      esac
      return 0
    fi
  done
  echo "unix:/run/php/php8.2-fpm.sock"
}

install_opcache() {
  # php-fpm's workers (www-data) run it: root's, in a folder only root may write, never a link
  [ ! -L "$share" ] || die "$share is a symbolic link: remove it first"
  install -d -o root -g root -m 0755 "$share"
  install -o root -g root -m 0644 "$root/nginx/php-relaunch-opcache.php" "$opcache"
}

nginx_running() { pgrep -x nginx >/dev/null 2>&1; }

reload_nginx() {
  nginx -t -q || die "nginx -t failed; the files above are in place for you to inspect"
  if nginx_running; then service nginx reload >/dev/null; fi
}

case "${1:-}" in
  install)
    [ "$(id -u)" = 0 ] || die "run as root"
    [ -d /etc/nginx/sites-available ] || die "no /etc/nginx/sites-available: apt-get install nginx"
    mkdir -p "$www" /etc/nginx/sites-enabled /etc/nginx/conf.d
    install -m 0644 "$root/nginx/php-heartbeat.php" "$page"
    install -m 0644 "$root/nginx/heartbeat_allowed.conf" "$allow"
    socket=$(fpm_socket)
    sed "s#fastcgi_pass unix:/run/php/php8.2-fpm.sock;#fastcgi_pass $socket;#" \
      "$root/nginx/php-heartbeat.conf" > "$site.tmp"
    chmod 0644 "$site.tmp"
    mv -f "$site.tmp" "$site"
    ln -sfn ../sites-available/php-heartbeat "$link"
    install_opcache
    reload_nginx
    echo "samples.sh: heartbeat installed: http://127.0.0.1:8889/php-heartbeat.php -> $socket"
    echo "samples.sh: OPcache status script installed: $opcache"
    ;;
  uninstall)
    [ "$(id -u)" = 0 ] || die "run as root"
    rm -f "$link" "$site" "$allow" "$page"
    rmdir "$www" 2>/dev/null || true
    rm -f "$opcache"
    rmdir "$share" 2>/dev/null || true
    if nginx_running; then reload_nginx; fi
    echo "samples.sh: heartbeat removed"
    ;;
  status)
    for f in "$page" "$allow" "$site" "$link" "$opcache"; do
      [ -e "$f" ] || { echo "missing $f"; exit 1; }
    done
    echo "installed"
    ;;
  *)
    echo "usage: scripts/samples.sh install|uninstall|status" >&2
    exit 2
    ;;
esac
