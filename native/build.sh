#!/bin/sh
# Builds native/build/trim.node (native/trim.c: malloc_trim for a long-running kubetrail, src/proxy/reclaim.ts)
# with the system's C compiler, at `npm install` / `npm ci` (package.json "install"). Optional: without a
# compiler, or on a system other than Linux, it builds nothing, says nothing, and kubetrail runs as before
# (after a flood of connections glibc's malloc keeps the memory; `kubetrail doctor` says which applies).
# It never fails the install: a compiler that fails gets one line on stderr.
cd "$(dirname "$0")" || exit 0
[ "$(uname -s)" = Linux ] || exit 0
cc=${CC:-cc}
command -v "$cc" >/dev/null 2>&1 || exit 0
mkdir -p build || exit 0
# Written beside, then renamed: a running kubetrail never loads a half-written file.
if "$cc" -shared -fPIC -O2 -Wall -fvisibility=hidden -Wl,-z,now -o build/trim.node.tmp trim.c 2>build/cc.log; then
  mv -f build/trim.node.tmp build/trim.node && rm -f build/cc.log
else
  rm -f build/trim.node.tmp
  echo "kubetrail: could not build native/build/trim.node with $cc (native/build/cc.log); memory after a connection flood is not given back (docs/security.md)" >&2
fi
exit 0
