#!/bin/sh
# Installs php-relaunch on this host (or into --root DIR): the binary, a configuration file
# (only when there is none), a logrotate file and one schedule. Idempotent: a second run with the
# same flags changes nothing. --uninstall removes exactly what it installed (files changed since
# are kept, and said so). Every file it owns is listed in /var/lib/php-relaunch/install.manifest.
#
# Usage: sh scripts/install.sh [options]
#   --schedule KIND   cron (default: /etc/cron.d/php-relaunch, every minute),
#                     mcron (/root/.cron/job.guile every 10 s, mcron started at boot by cron),
#                     mcron+cron (the same, and cron runs it whenever mcron is not running),
#                     systemd (the watch service), or none
#   --binary PATH     the php-relaunch executable to install (default: dist/php-relaunch,
#                     built with scripts/build.sh when missing)
#   --url URI --timeout S --mail-to LIST --service NAME
#                     what a new /etc/php-relaunch/config.toml says (an existing one is kept)
#   --root DIR        install below DIR instead of / (for packaging and tests; nothing is
#                     started or reloaded then)
#   --dry-run         say what would change, change nothing
#   --uninstall       remove what an earlier run installed
set -eu

here=$(cd "$(dirname "$0")" && pwd -P)
repo=$(dirname "$here")

root=/
schedule=cron
binary=""
url="http://127.0.0.1:8889/php-heartbeat.php"
timeout=5
mail_to=""
service=""
dry=no
uninstall=no

die() { echo "install.sh: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --root) root=${2:?--root needs a folder}; shift 2 ;;
    --schedule) schedule=${2:?--schedule needs a kind}; shift 2 ;;
    --binary) binary=${2:?--binary needs a path}; shift 2 ;;
    --url) url=${2:?--url needs a URI}; shift 2 ;;
    --timeout) timeout=${2:?--timeout needs seconds}; shift 2 ;;
    --mail-to) mail_to=${2?--mail-to needs a list}; shift 2 ;;
    --service) service=${2:?--service needs a name}; shift 2 ;;
    --dry-run) dry=yes; shift ;;
    --uninstall) uninstall=yes; shift ;;
    -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option \"$1\"; see --help" ;;
  esac
done

case "$schedule" in cron|mcron|mcron+cron|systemd|none) ;; *)
  die "unknown schedule \"$schedule\": expected cron, mcron, mcron+cron, systemd or none" ;;
esac
case "$root" in /*) ;; *) die "--root must be an absolute path, not \"$root\"" ;; esac
root=${root%/}
[ "$root" = "" ] || [ -d "$root" ] || die "--root \"$root\" is not a folder"
if [ "$root" = "" ] && [ "$dry" = no ] && [ "$(id -u)" != 0 ]; then
  die "run as root (or use --root DIR, or --dry-run)"
fi
case "$timeout" in ''|*[!0-9]*) die "--timeout \"$timeout\" is not a whole number of seconds" ;; esac
# values that go into TOML strings and cron lines: no quotes, backslashes or new lines
for value in "$url" "$mail_to" "$service"; do
  case "$value" in *[\"\\\'\`\$]*) die "refusing \"$value\": quotes, \$ and backslashes are not allowed" ;; esac
done

bin_path=/usr/local/bin/php-relaunch
config=/etc/php-relaunch/config.toml
manifest=/var/lib/php-relaunch/install.manifest
started_by="installed by php-relaunch's scripts/install.sh; removed by install.sh --uninstall"

say() { echo "install.sh: $*"; }
sum() { cksum < "$1" | awk '{print $1 "-" $2}'; }

# the files this run wants, as "path<TAB>source<TAB>mode"; their content is prepared in $work
work=$(mktemp -d "${TMPDIR:-/tmp}/php-relaunch-install.XXXXXX")
trap 'rm -rf "$work"' EXIT
wanted="$work/wanted"
: > "$wanted"
want() { # want PATH MODE: the content is on stdin
  file="$work/f$(wc -l < "$wanted" | tr -d ' ')"
  cat > "$file"
  printf '%s\t%s\t%s\n' "$1" "$file" "$2" >> "$wanted"
}

run_line() { # the command line schedules run
  echo "$bin_path --config $config${*:+ $*}"
}

if [ "$uninstall" = no ]; then
  if [ -z "$binary" ]; then
    binary="$repo/dist/php-relaunch"
    if [ ! -x "$binary" ]; then
      say "building $binary"
      [ "$dry" = yes ] || sh "$repo/scripts/build.sh" || die "the build failed (see above); or give --binary PATH"
    fi
  fi
  if [ "$dry" = no ] || [ -e "$binary" ]; then
    [ -f "$binary" ] || die "no binary at \"$binary\""
    want "$bin_path" 755 < "$binary"
  fi
  want /etc/logrotate.d/php-relaunch 644 < "$repo/packaging/php-relaunch.logrotate"
  case "$schedule" in cron|mcron|mcron+cron)
    # root's lock folder (the watch unit has RuntimeDirectory= for it), made at boot where
    # systemd-tmpfiles runs; php-relaunch makes it too, and refuses one others can write
    want /etc/tmpfiles.d/php-relaunch.conf 644 <<EOF
# php-relaunch's locks, shared by cron, mcron and watch runs: root's alone ($started_by)
d /run/php-relaunch 0700 root root -
EOF
  esac
  case "$schedule" in
    cron)
      want /etc/cron.d/php-relaunch 644 <<EOF
# php-relaunch every minute: each run watches for one minute ($started_by)
SHELL=/bin/sh
PATH=/usr/sbin:/usr/bin:/sbin:/bin
* * * * * root $(run_line) >/dev/null 2>&1
EOF
      ;;
    mcron|mcron+cron)
      want /root/.cron/job.guile 644 <<EOF
;; php-relaunch every 10 seconds under mcron ($started_by)
(job '(next-second (range 0 60 10))
     "$(run_line --run-for 10) >/dev/null 2>&1")
EOF
      {
        echo "# mcron runs php-relaunch every 10 s; cron starts it at boot ($started_by)"
        echo "SHELL=/bin/sh"
        echo "PATH=/usr/sbin:/usr/bin:/sbin:/bin"
        echo "@reboot root mcron -d"
        if [ "$schedule" = mcron+cron ]; then
          echo "# whenever mcron is not running, cron runs it every minute instead"
          echo "* * * * * root pgrep -x mcron >/dev/null || $(run_line) >/dev/null 2>&1"
        fi
      } | want /etc/cron.d/php-relaunch 644
      ;;
    systemd)
      want /etc/systemd/system/php-relaunch.service 644 < "$repo/systemd/php-relaunch.service"
      ;;
  esac
fi

# what an earlier run installed: "sum<TAB>path" lines
old="$work/old"
if [ -f "$root$manifest" ]; then cp "$root$manifest" "$old"; else : > "$old"; fi

changes=0
act() { # act VERB PATH: count and say, or only say in a dry run
  changes=$((changes + 1))
  if [ "$dry" = yes ]; then say "would $1 $2"; else say "$1 $2"; fi
}

remove_owned() { # remove_owned PATH SUM: only if it is still what we installed
  target="$root$1"
  [ -e "$target" ] || return 0
  if [ -L "$target" ] || [ "$(sum "$target")" != "$2" ]; then
    say "keeping $1: changed since it was installed"
    return 0
  fi
  act remove "$1"
  [ "$dry" = yes ] || rm -f "$target"
  [ "$dry" = yes ] || prune "$(dirname "$target")"
}

prune() { # removes the folder and its parents while they are empty (rmdir refuses otherwise)
  dir=$1
  while [ "$dir" != "$root" ] && [ "$dir" != "/" ] && rmdir "$dir" 2>/dev/null; do
    dir=$(dirname "$dir")
  done
}

new="$work/new"
: > "$new"
# remove what the earlier run installed and this one does not want (another schedule)
while IFS="$(printf '\t')" read -r osum opath; do
  [ -n "$opath" ] || continue
  # the configuration is kept by a re-install, and handled below
  if [ "$opath" = "$config" ] && [ "$uninstall" = no ]; then continue; fi
  if ! cut -f1 "$wanted" | grep -qxF "$opath"; then remove_owned "$opath" "$osum"; fi
done < "$old"

if [ "$uninstall" = no ]; then
  # the configuration file: written only when there is none, and then owned like the rest;
  # once the operator changes it, it is theirs (kept by re-installs and by --uninstall)
  owned=$(awk -F '\t' -v p="$config" '$2 == p { print $1 }' "$old")
  if [ -e "$root$config" ]; then
    if [ -n "$owned" ] && [ ! -L "$root$config" ] && [ "$(sum "$root$config")" = "$owned" ]; then
      printf '%s\t%s\n' "$owned" "$config" >> "$new"
    else
      say "keeping $config: it exists (install.sh never overwrites a configuration)"
    fi
  else
    {
      echo "# php-relaunch's configuration, written by scripts/install.sh (which removes it on"
      echo "# --uninstall unless you change it). Every key: systemd/config.example.toml."
      echo "[defaults]"
      echo "timeout = $timeout"
      printf 'mail_to = ['
      first=yes
      for a in $(echo "$mail_to" | tr ',' ' '); do
        [ "$first" = yes ] || printf ', '
        printf '"%s"' "$a"
        first=no
      done
      echo "]"
      echo ""
      echo "[[target]]"
      echo "name = \"${service:-php}\""
      echo "url = \"$url\""
      [ -z "$service" ] || echo "service = \"$service\""
    } > "$work/config"
    act install "$config"
    if [ "$dry" = no ]; then
      mkdir -p "$(dirname "$root$config")"
      install -m 640 "$work/config" "$root$config"
    fi
    printf '%s\t%s\n' "$(sum "$work/config")" "$config" >> "$new"
  fi

  while IFS="$(printf '\t')" read -r path src mode; do
    target="$root$path"
    if [ -e "$target" ] && [ ! -L "$target" ] && cmp -s "$src" "$target"; then
      : # unchanged
    else
      if [ -L "$target" ]; then die "refusing to write through the symbolic link $target"; fi
      if [ -e "$target" ]; then act update "$path"; else act install "$path"; fi
      if [ "$dry" = no ]; then
        mkdir -p "$(dirname "$target")"
        # a temporary file beside it, then rename: never half a file in place
        install -m "$mode" "$src" "$target.install-tmp"
        mv -f "$target.install-tmp" "$target"
      fi
    fi
    printf '%s\t%s\n' "$(sum "$src")" "$path" >> "$new"
  done < "$wanted"
fi

if [ "$uninstall" = yes ]; then
  # the configuration and the schedule went above; the manifest goes last
  if [ -s "$old" ] && [ "$dry" = no ]; then
    rm -f "$root$manifest"
    prune "$(dirname "$root$manifest")"
  fi
elif [ "$dry" = no ] && ! cmp -s "$new" "$old"; then
  mkdir -p "$(dirname "$root$manifest")"
  install -m 600 "$new" "$root$manifest"
fi

if [ "$changes" = 0 ]; then say "nothing to change"; fi

# starting things is for a real install only
if [ "$root" = "" ] && [ "$dry" = no ] && [ "$uninstall" = no ] && [ "$changes" -gt 0 ]; then
  case "$schedule" in
    systemd)
      if [ -d /run/systemd/system ]; then
        systemctl daemon-reload
        systemctl enable --now php-relaunch
      else
        say "systemd is not running here: start php-relaunch watch another way"
      fi
      ;;
    mcron|mcron+cron)
      pgrep -x mcron >/dev/null || mcron -d || say "could not start mcron: is it installed?"
      ;;
  esac
  "$bin_path" check-config --config "$config" >/dev/null ||
    say "check $config: php-relaunch check-config --config $config"
fi
exit 0
