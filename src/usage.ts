/** What `--help` and `--version` say: the command line, documented in one place. */
import meta from "../deno.json" with { type: "json" };

/** The program's version. */
export const VERSION: string = meta.version;

/** `--help`. */
export const USAGE =
  `php-relaunch ${VERSION}: restart php-fpm when its heartbeat through nginx fails

Usage:
  php-relaunch <URI> <timeout> <emails> [restart-cgi]     (the original's crontab form)
  php-relaunch --url URI [--timeout S] [--mail-to LIST] [options]
  php-relaunch --once [--restart] --url URI ...           (one probe; exit code = verdict)
  php-relaunch check-config <same arguments>              (validate, print settings, exit 0 or 2)
  php-relaunch watch [--config FILE]                      (long-running service, every target)
  php-relaunch watch --auto                               (every php-fpm discover finds)
  php-relaunch watch <URI> [--interval S] [options]       (long-running, one target)
  php-relaunch reset [target]                             (re-arm restarting after giving up)
  php-relaunch report [--since 7d] [--format text|json]   (incidents, causes, tuning hints)
  php-relaunch status [--format text|json]                (each target now; exit 0 or 3)
  php-relaunch pause [target] [--for 30m] [--reason TEXT] (hold restarts and alerts: deploys)
  php-relaunch resume [target] [--reason TEXT]            (end a pause before its time)
  php-relaunch discover [--config]                        (every php-fpm and pool; a config)

One run watches for one minute, so that cron can start it every minute: it probes every
<timeout> seconds (floor(60 / timeout) probes; see --run-for for mcron). On 500/502/503/504
or no answer within the timeout it kills php-fpm's processes, starts the service again
(10 attempts, each verified), logs one line, mails the recipients and waits max(timeout, 10) s
before probing again.
A 5xx is confirmed by a second one 1 s later; one timeout is enough, as in the original.
At most 3 restarts in 15 min: then it gives up (one mail) until healthy for 15 min, and
tries one restart again after 5 min, 15 min, 1 h, then every hour (retry_after).
Connection refused or an unknown host (nginx down) and non-heartbeat answers (444, 3xx, 4xx)
never restart php-fpm: they are logged and mailed, and the run stops.

Arguments:
  <URI>                  heartbeat page, http:// or https://, e.g.
                         http://127.0.0.1:8889/php-heartbeat.php; or php-fpm itself
                         over FastCGI, without nginx: fcgi://127.0.0.1:9000/ping or
                         fcgi+unix:///run/php/php8.2-fpm.sock/ping (the socket path
                         ends at .sock; the rest is the pool's ping.path or a script)
  <timeout>              seconds a probe may take, 1 to 60 (default 5)
  <emails>               comma-separated recipients, '' for none
  [restart-cgi]          1: also relaunch php-cgi (0 or absent: do not)

Options:
  --url URI, --timeout S, --mail-to LIST, --restart-cgi
                         the same as the arguments above
  --service NAME         php-fpm service (default: the one installed, e.g. php8.2-fpm)
  --process-name NAME    its processes' name, as ps shows it (default: from the service,
                         php8.2-fpm -> php-fpm8.2)
  --init SYSTEM          systemd, sysv, openrc or freebsd (default: detected)
  --cgi-service NAME, --cgi-process-name NAME
                         the same for php-cgi
  -c, --config FILE      targets and settings (TOML; watch reads
                         /etc/php-relaunch/config.toml by default, /usr/local/etc/... on
                         FreeBSD); flags override it
  --interval S           watch mode: seconds between probes (default 5, 0.5 allowed)
  --status-url URI       php-fpm's status page over FastCGI (fcgi://127.0.0.1:909/status,
                         best on pm.status_listen): early warnings, busy-or-hung after a
                         timeout, the workers' requests in each incident
  --expect TEXT          what the heartbeat's body must start with (default: pong over
                         FastCGI, anything over HTTP); a 2xx with another body is a failure
  --metrics-file PATH    Prometheus metrics as a node_exporter textfile, rewritten after
                         every run (e.g. /var/lib/prometheus/node-exporter/php-relaunch.prom)
  --metrics-listen ADDR  watch mode: serve /metrics on 127.0.0.1:PORT (loopback only)
  --since DURATION       report: how far back (default 7d; 24h, 30d...)
  --format FORMAT        report and status: text (default) or json; discover: text or toml
  --for DURATION         pause: how long (default pause_default, 30m; at most pause_max,
                         4h); the pause ends by itself then
  --reason TEXT          pause and resume: why, one line (in the log and the alert)
  --log-format FORMAT    text (default) or json, one object per line
  --run-for S            how long one run lasts: the scheduler's period (default 60 for
                         cron; 10 for mcron every 10 s). It probes floor(S / timeout) times
  --once                 probe once and exit with the verdict; no restart, no mail
  --restart              with --once: restart php-fpm if it failed
  --log-file PATH        default /var/log/php-relaunch.log (root),
                         ~/.local/state/php-relaunch.log (others)
  --lock-file PATH       default /run/php-relaunch/php-relaunch-<service>.lock (root;
                         the folder is made 0700, and one others can write is refused),
                         $XDG_RUNTIME_DIR/php-relaunch-<service>.lock (others)
  --state-dir DIR        failure counts and restart history between runs (default
                         /var/lib/php-relaunch as root, ~/.local/state/php-relaunch others)
  --smtp-host HOST       mail server (default localhost, or $PHP_RELAUNCH_SMTP_HOST)
  --smtp-port PORT       its port (default 25, or $PHP_RELAUNCH_SMTP_PORT)
  --mail-from ADDRESS    sender (default php-relaunch@<hostname>, or $PHP_RELAUNCH_MAIL_FROM)
  --smtp-tls MODE        auto (STARTTLS when offered; default), starttls (required),
                         tls (implicit, port 465) or none
  --smtp-user USER       authenticate (or $PHP_RELAUNCH_SMTP_USER); the password comes from
                         $PHP_RELAUNCH_SMTP_PASSWORD or --smtp-password-file (mode 0600)
  --smtp-password-file PATH
  --mail-transport T     smtp (default) or sendmail (/usr/sbin/sendmail, local delivery)
  --webhook URL          also POST every alert as JSON (Slack-compatible "text"), or
                         $PHP_RELAUNCH_WEBHOOK; undelivered alerts are retried on later runs
  --deadman-url URL      a dead-man's switch (healthchecks.io, Uptime Kuma push), or
                         $PHP_RELAUNCH_DEADMAN_URL: pinged after each run (its /fail when
                         the exit code is not 0), and in watch mode at least every 60 s
                         ([deadman] every) while its probe loops make progress
  -v, --verbose          every probe on stderr
  -h, --help             this help
  -V, --version          the version, Deno's version and the git revision

Examples (root's crontab; cron runs /bin/sh, so use >/dev/null 2>&1, not &>):
  * * * * * /usr/local/bin/php-relaunch http://127.0.0.1:8889/php-heartbeat.php 5 'ops@example.com' >/dev/null 2>&1
  * * * * * /usr/local/bin/php-relaunch http://127.0.0.1:8889/php-heartbeat.php 5 'a@example.com,b@example.com' 1 >/dev/null 2>&1
  * * * * * pgrep mcron >/dev/null || /usr/local/bin/php-relaunch http://127.0.0.1:8889/php-heartbeat.php 5 '' >/dev/null 2>&1
  php-relaunch --once --url http://127.0.0.1:8889/php-heartbeat.php --timeout 3

Exit codes:
  0  healthy, or php-fpm was restarted and answers again; also: another run holds the lock
  1  internal error (a bug: please report it with the log)
  2  bad arguments, configuration or environment; nothing was probed or restarted
  3  php-fpm failed and is still down (restart failed or given up, failure being confirmed
     at the end of the run, an overloaded pool left alone, or --once without --restart)
  4  the heartbeat answered, but not as a heartbeat (444, 3xx, 4xx, a 2xx without --expect):
     fix the setup
  7  the heartbeat's host refused the connection or did not resolve (nginx down)
`;
