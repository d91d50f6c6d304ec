/**
 * Memory for people, in the few forms the log lines, alerts and report use: whole megabytes
 * ("512 MB", from bytes or from the kB that ps and the kernel count in), megabytes to one
 * decimal ("12.5 MB", OPcache's small buffers), and GiB above a GiB, else MiB ("1.9 GiB").
 */

const KIB = 1024;
const MIB = 2 ** 20;

/** Whole megabytes of `bytes`: "512 MB". */
export function megabytes(bytes: number): string {
  return `${Math.round(bytes / MIB)} MB`;
}

/** Whole megabytes of `kb` kilobytes (ps's RSS, the kernel's counts): "512 MB". */
export function megabytesOfKb(kb: number): string {
  return `${Math.round(kb / KIB)} MB`;
}

/** Megabytes of `bytes` to one decimal: "12.5 MB". */
export function megabytesTenths(bytes: number): string {
  return `${(bytes / MIB).toFixed(1)} MB`;
}

/** Whole kibibytes of `bytes`: "3 KiB". */
export function kibibytes(bytes: number): string {
  return `${Math.round(bytes / KIB)} KiB`;
}

/** `kb` kilobytes as GiB to one decimal from 1 GiB up, else whole MiB: "1.9 GiB", "512 MiB". */
export function humanKb(kb: number): string {
  return kb >= KIB * KIB ? `${(kb / KIB / KIB).toFixed(1)} GiB` : `${Math.round(kb / KIB)} MiB`;
}
