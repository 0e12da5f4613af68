/**
 * V8 flags for a long-running kubetrail (`start`, the background kubetrail, the image). A 2 MiB young
 * generation instead of Node's default 16 MiB: relayed chunks die young, and a large list left ~50 MB of
 * them waiting for a scavenge. Measured (bench/lib/watch-mem.ts, 4 x 82 MB lists): peak RSS 165 -> 139 MB
 * for ~1% more CPU (1 MiB: 128 MB for +8%). Used where kubetrail starts Node itself: the background
 * kubetrail and the image's ENTRYPOINT (a test checks). Not in the bin's shebang: `env -S` is missing from
 * BusyBox, older coreutils and the BSDs, and the bin must start everywhere.
 */
export const NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2'];
