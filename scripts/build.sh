#!/bin/sh
# Builds dist/php-relaunch, one self-contained executable, with the permission set "php-relaunch"
# of deno.json and the V8 flags embedded (the same `deno task start` runs with).
#
# deno compile needs denort, Deno's runtime without the toolchain, for the pinned version. It is
# looked for in $DENORT_BIN, then in $DENO_DIR/dl/release/v<version>/, then downloaded.
set -eu

here=$(cd "$(dirname "$0")" && pwd -P)
root=$(dirname "$here")
deno="$here/deno"
out="$root/dist/php-relaunch"
cd "$root"
mkdir -p dist

version=$("$deno" -V | awk '{print $2}')
# V8 tuned for a small daemon, as `deno task start` runs it (tests compare the two): a 1 MiB
# young generation and no optimizing compilers keep watch mode's resident memory low; a probe a
# second never needs optimized code
v8_flags="--max-semi-space-size=1,--lite-mode"
err=$(mktemp "$root/dist/.compile-err.XXXXXX")
trap 'rm -f "$err"' EXIT

# the revision --version prints, embedded in the binary ("+" when the checkout had changes)
rev=$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [ "$rev" != unknown ] && [ -n "$(git -C "$root" status --porcelain 2>/dev/null)" ]; then rev="$rev+"; fi
echo "$rev" > dist/revision.txt

# --no-code-cache: Deno's standalone code keeps a compiled binary's V8 code cache in
# $TMPDIR/deno-compile-<name>.cache, a file root would write and load back from a folder everyone
# can write to; `task start` gives up its cache too (about 2 MB less resident in watch mode)
if ! RUST_BACKTRACE=0 "$deno" compile --frozen --cached-only --no-code-cache -P=php-relaunch --v8-flags="$v8_flags" \
  --include dist/revision.txt --output "$out" src/main.ts 2>"$err"; then
  if grep -qE 'Setting up base binary|denort-.*\.zip|Could not find denort' "$err"; then
    cat >&2 <<MSG
php-relaunch build: deno compile cannot get denort, the runtime it embeds, for Deno $version.
It is not downloadable from this machine. Get denort-x86_64-unknown-linux-gnu.zip for v$version
from Deno's release page on a machine that can, then either:
  - unzip it and run: DENORT_BIN=/path/to/denort scripts/deno task compile
  - or put the zip in \$DENO_DIR/dl/release/v$version/ (DENO_DIR: see 'scripts/deno info').
Meanwhile php-relaunch runs from source with the same permissions: scripts/deno task start ...
MSG
    sed 's/^/  deno: /' "$err" | tail -n 3 >&2
    exit 1
  fi
  cat "$err" >&2
  exit 1
fi

# A DENORT_BIN pointing at the full deno binary "succeeds" but yields a Deno REPL, not our program.
if ! got=$("$out" --version 2>&1 </dev/null) || ! printf '%s' "$got" | grep -q '^php-relaunch '; then
  rm -f "$out"
  echo "php-relaunch build: $out does not run php-relaunch (it printed: $(printf '%s' "$got" | head -n 1)). Is DENORT_BIN the denort binary, not deno?" >&2
  exit 1
fi
echo "built $out: $got"
