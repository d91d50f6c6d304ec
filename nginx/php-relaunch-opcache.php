<?php
// php-relaunch OPcache status: php-relaunch asks php-fpm for this script straight over FastCGI
// (SCRIPT_FILENAME), never through nginx. OPcache's memory is its master's, so any worker tells it.
// Install as /usr/local/share/php-relaunch/php-relaunch-opcache.php (root's, 0644), outside every
// docroot: `sh scripts/samples.sh install`.
header('Content-Type: application/json');
header('Cache-Control: no-store');
$ini = [];
foreach ([
    'opcache.enable',
    'opcache.memory_consumption',
    'opcache.max_accelerated_files',
    'opcache.interned_strings_buffer',
    'opcache.max_wasted_percentage',
    'opcache.force_restart_timeout',
] as $key) {
    $ini[$key] = ini_get($key);
}
// false when OPcache is off, not loaded, or opcache.restrict_api leaves this folder out
$status = function_exists('opcache_get_status') ? @opcache_get_status(false) : false;
if (is_array($status)) {
    // JIT and preloading are not what php-relaunch watches: keep the answer small
    unset($status['jit'], $status['preload_statistics']);
}
echo json_encode([
    'loaded' => function_exists('opcache_get_status'),
    'status' => $status,
    'ini' => $ini,
]), "\n";
