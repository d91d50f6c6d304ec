<?php
// php-relaunch heartbeat: a 200 from here proves nginx -> php-fpm -> PHP works.
// Install as /var/www/php-heartbeat/php-heartbeat.php (see nginx/php-heartbeat.conf).
header('Content-Type: text/plain');
header('Cache-Control: no-store');
echo $_SERVER['HTTP_HOST'] ?? '', "\n", $_SERVER['SERVER_ADDR'] ?? '', "\n";
