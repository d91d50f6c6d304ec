/** What php-relaunch's OPcache status script prints, for tests: PHP 8.2's shape, with overrides. */
import { OPCACHE_SCRIPT } from "../../src/fpm/opcache.ts";

/** What a test changes of OPcache's state (bytes in MiB for readability). */
export interface OpcacheShape {
  full?: boolean;
  pending?: boolean;
  usedMb?: number;
  freeMb?: number;
  wastedMb?: number;
  wastedPercent?: number;
  keys?: number;
  maxKeys?: number;
  hits?: number;
  misses?: number;
  startTime?: number;
  oomRestarts?: number;
  internedMb?: number;
  internedFreeKb?: number;
  memoryConsumption?: string;
  maxWasted?: string;
}

const MB = 2 ** 20;

/** The status script's JSON for `shape` (a healthy 128 MB OPcache by default). */
export function opcacheJson(shape: OpcacheShape = {}): string {
  const interned = (shape.internedMb ?? 8) * MB;
  const internedFree = (shape.internedFreeKb ?? 4096) * 1024;
  return JSON.stringify({
    loaded: true,
    status: {
      "opcache_enabled": true,
      "cache_full": shape.full ?? false,
      "restart_pending": shape.pending ?? false,
      "restart_in_progress": false,
      "memory_usage": {
        "used_memory": Math.round((shape.usedMb ?? 40) * MB),
        "free_memory": Math.round((shape.freeMb ?? 88) * MB),
        "wasted_memory": Math.round((shape.wastedMb ?? 0) * MB),
        "current_wasted_percentage": shape.wastedPercent ?? 0,
      },
      "interned_strings_usage": {
        "buffer_size": interned,
        "used_memory": interned - internedFree,
        "free_memory": internedFree,
        "number_of_strings": 4553,
      },
      "opcache_statistics": {
        "num_cached_scripts": shape.keys ?? 500,
        "num_cached_keys": shape.keys ?? 500,
        "max_cached_keys": shape.maxKeys ?? 16229,
        hits: shape.hits ?? 99_000,
        "start_time": shape.startTime ?? 1_796_294_985,
        "last_restart_time": 0,
        "oom_restarts": shape.oomRestarts ?? 0,
        "hash_restarts": 0,
        "manual_restarts": 0,
        misses: shape.misses ?? 1000,
        "blacklist_misses": 0,
        "blacklist_miss_ratio": 0,
        "opcache_hit_rate": 99,
      },
    },
    ini: {
      "opcache.enable": "1",
      "opcache.memory_consumption": shape.memoryConsumption ?? "128",
      "opcache.max_accelerated_files": "10000",
      "opcache.interned_strings_buffer": String(shape.internedMb ?? 8),
      "opcache.max_wasted_percentage": shape.maxWasted ?? "5",
      "opcache.force_restart_timeout": "180",
    },
  });
}

/** The files of a host where `samples.sh install` put the status script (root's, 0644). */
export const SCRIPT_INSTALLED = {
  files: { [OPCACHE_SCRIPT]: "<?php\n" },
  modes: { [OPCACHE_SCRIPT]: 0o644 },
  dirs: { "/usr/local/share/php-relaunch": ["php-relaunch-opcache.php"] },
};
