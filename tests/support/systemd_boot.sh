#!/bin/sh
# Runs inside `unshare -m`: gives a systemd user manager what PID 1 would have given it, in this
# mount namespace only, then becomes that manager, its output appended to $2. Nothing here is visible outside the namespace
# but the cgroup named $1, which the caller removes once the manager has exited.
#  - /run/systemd/system: the "booted with systemd" mark, without which `systemd --user` refuses
#  - /run/systemd/inaccessible/*: the nodes that sandboxing directives mount over hidden paths
#  - a cgroup2-only /sys/fs/cgroup, and a child cgroup of our own: systemd moves every process
#    of the cgroup it starts in into its init.scope, so it must not start in a shared one
set -eu
cgroup=$1
exec >>"$2" 2>&1
mount --make-rprivate /
mkdir -p /run/systemd
mount -t tmpfs -o mode=0755 tmpfs /run/systemd
mkdir /run/systemd/system
i=/run/systemd/inaccessible
mkdir -m 0755 "$i"
: >"$i/reg"
chmod 0000 "$i/reg"
mkdir -m 0000 "$i/dir"
mkfifo -m 0000 "$i/fifo"
mknod -m 0000 "$i/chr" c 0 0
mknod -m 0000 "$i/blk" b 0 0
python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$i/sock"
chmod 0000 "$i/sock"
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mkdir "/sys/fs/cgroup/$cgroup"
echo $$ >"/sys/fs/cgroup/$cgroup/cgroup.procs"
exec /lib/systemd/systemd --user
