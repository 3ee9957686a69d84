#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# dracut-staged.sh STAGE WORK DRACUT-ARGS...: runs dracut in a private mount
# namespace where /usr and /etc show STAGE (a `make install DESTDIR=` tree)
# over the host's, ignoring the host's dracut configuration (dracut copies
# from the root it runs in; --sysroot would need a whole OS tree). WORK holds
# the overlays' work directories and dracut's temporary files. Needs root.
# Used by tests/packaging.rs and tests/boot/boot.sh.
set -eu
stage=${1:?usage: dracut-staged.sh STAGE WORK DRACUT-ARGS...}
work=${2:?usage: dracut-staged.sh STAGE WORK DRACUT-ARGS...}
shift 2
mkdir -p "$work/overlay-work/usr" "$work/overlay-work/etc" "$work/empty.conf.d"
exec unshare --mount --propagation private bash -c '
set -e
stage=$1 work=$2
shift 2
for d in usr etc; do
    mount -t overlay overlay \
        -o "lowerdir=/$d,upperdir=$stage/$d,workdir=$work/overlay-work/$d" "/$d"
done
exec dracut --force --no-hostonly --no-hostonly-cmdline --conf /dev/null \
    --confdir "$work/empty.conf.d" --no-early-microcode --compress "zstd -1 -T0" \
    --tmpdir "$work" "$@"
' dracut-staged "$stage" "$work" "$@"
