/**
 * OPcache's status script's answer: parsed and bounded (oversized, malformed, forged), and each
 * early warning at its threshold, naming the setting to raise.
 */
import assert from "node:assert/strict";
import {
  MAX_OPCACHE_ANSWER,
  opcacheFindings,
  type OpcacheRead,
  type OpcacheStatus,
  opcacheWarnings,
  parseOpcache,
  readOpcache,
  RESTART_PENDING_MS,
} from "../../src/fpm/opcache.ts";
import { opcacheScriptProblem } from "../../src/fpm/discovery.ts";
import { OPCACHE_SCRIPT } from "../../src/fpm/opcache.ts";
import { debianFs, FakeClock, scriptedFcgi } from "../support/fakes.ts";
import { opcacheJson, type OpcacheShape, SCRIPT_INSTALLED } from "../support/opcache.ts";

function status(shape: OpcacheShape = {}): OpcacheStatus {
  const read = parseOpcache(opcacheJson(shape)) as OpcacheRead;
  assert.ok(typeof read !== "string" && read.on, JSON.stringify(read));
  return read.status;
}

const kinds = (list: { kind: string }[]) => list.map((w) => w.kind);

Deno.test("opcache: the script's answer is read as OPcache's state and its settings", () => {
  const s = status({ usedMb: 100, freeMb: 20, wastedMb: 8, wastedPercent: 6.25, keys: 900 });
  assert.equal(s.usedBytes, 100 * 2 ** 20);
  assert.equal(s.freeBytes, 20 * 2 ** 20);
  assert.equal(s.wastedBytes, 8 * 2 ** 20);
  assert.equal(s.wastedPercent, 6.25);
  assert.equal(s.cachedKeys, 900);
  assert.equal(s.hits, 99_000);
  assert.deepEqual(s.ini, {
    memoryConsumptionMb: 128,
    maxAcceleratedFiles: 10000,
    internedStringsBufferMb: 8,
    maxWastedPercentage: 5,
  });
  assert.equal(s.iniMismatch, false);
  assert.deepEqual(opcacheFindings(status()), [], "a healthy OPcache says nothing");
});

Deno.test("opcache: oversized, malformed and forged answers are refused with a reason, never thrown", () => {
  const big = opcacheJson().replace(
    '"loaded"',
    `"pad":"${"x".repeat(MAX_OPCACHE_ANSWER)}","loaded"`,
  );
  assert.match(parseOpcache(big) as string, /more than the status script prints/);
  assert.match(parseOpcache("<br>Fatal error") as string, /^not JSON/);
  assert.match(parseOpcache("[]") as string, /^not php-relaunch's OPcache status/);
  const data = JSON.parse(opcacheJson());
  data.status.memory_usage.free_memory = -5;
  assert.match(
    parseOpcache(JSON.stringify(data)) as string,
    /not php-relaunch's OPcache status: status/,
  );
  data.status.memory_usage.free_memory = 1e300;
  assert.match(parseOpcache(JSON.stringify(data)) as string, /OPcache status/);
  data.status.memory_usage.free_memory = "lots";
  assert.match(parseOpcache(JSON.stringify(data)) as string, /OPcache status/);
  const wasted = JSON.parse(opcacheJson());
  wasted.status.memory_usage.current_wasted_percentage = 250;
  assert.equal(typeof parseOpcache(JSON.stringify(wasted)), "string", "a percentage above 100");
});

Deno.test("opcache: off, not loaded and restricted say why", () => {
  const off = JSON.parse(opcacheJson());
  off.status = false;
  off.ini["opcache.enable"] = "0";
  assert.deepEqual(parseOpcache(JSON.stringify(off)), { on: false, why: "opcache.enable is off" });
  off.ini["opcache.enable"] = "1";
  assert.match((parseOpcache(JSON.stringify(off)) as { why: string }).why, /restrict_api/);
  off.loaded = false;
  assert.deepEqual(parseOpcache(JSON.stringify(off)), {
    on: false,
    why: "the opcache extension is not loaded",
  });
});

Deno.test("opcache: a pool's php_admin_value[opcache.memory_consumption] shows as negative used memory", () => {
  // seen on php-fpm 8.2: the pool's 8 against the master's 128 MB gave used_memory -116661184
  const s = status({ usedMb: -111.25, freeMb: 119.25, memoryConsumption: "8" });
  assert.equal(s.iniMismatch, true);
  assert.equal(s.usedBytes, 0, "no negative gauge");
});

Deno.test("opcache: cache full names opcache.memory_consumption, or max_accelerated_files when the keys ran out", () => {
  const memory = opcacheFindings(status({ full: true, usedMb: 127.5, freeMb: 0.5 }));
  assert.deepEqual(kinds(memory), ["opcache_full"]);
  assert.equal(memory[0]!.setting, "opcache.memory_consumption");
  assert.match(memory[0]!.message, /OPcache is full \(127\.5 MB used, 0\.5 MB free/);
  assert.match(memory[0]!.advice, /from 128 to 256/);
  const keys = opcacheFindings(status({ full: true, keys: 223, maxKeys: 223 }));
  assert.equal(keys[0]!.setting, "opcache.max_accelerated_files");
  assert.match(keys[0]!.message, /223 of 223 keys/);
  assert.deepEqual(opcacheFindings(status({ full: false, freeMb: 0.5 })), [], "not full: quiet");
});

Deno.test("opcache: wasted memory warns above opcache.max_wasted_percentage, not at it", () => {
  assert.deepEqual(kinds(opcacheFindings(status({ wastedPercent: 5, wastedMb: 6.4 }))), []);
  const above = opcacheFindings(status({ wastedPercent: 5.1, wastedMb: 6.5 }));
  assert.deepEqual(kinds(above), ["opcache_wasted"]);
  assert.match(above[0]!.message, /5\.1% .*above opcache.max_wasted_percentage = 5/);
  assert.equal(above[0]!.setting, "opcache.memory_consumption");
  assert.deepEqual(
    kinds(opcacheFindings(status({ wastedPercent: 9, maxWasted: "10" }))),
    [],
    "the limit is OPcache's own setting",
  );
});

Deno.test("opcache: the interned-strings buffer is full below 1% (or 16 KiB) free", () => {
  // 8 MiB: 1% is about 82 KiB
  assert.deepEqual(kinds(opcacheFindings(status({ internedFreeKb: 90 }))), []);
  const full = opcacheFindings(status({ internedFreeKb: 80 }));
  assert.deepEqual(kinds(full), ["opcache_interned"]);
  assert.equal(full[0]!.setting, "opcache.interned_strings_buffer");
  assert.match(full[0]!.advice, /from 8 to 16/);
  // 1 MiB: 16 KiB is the floor (seen: 12 KiB free after 120 scripts)
  assert.deepEqual(kinds(opcacheFindings(status({ internedMb: 1, internedFreeKb: 12 }))), [
    "opcache_interned",
  ]);
  assert.deepEqual(kinds(opcacheFindings(status({ internedMb: 1, internedFreeKb: 17 }))), []);
});

Deno.test("opcache: a restart pending for 5 min warns; for less, not", () => {
  const now = 1_700_000_000_000;
  const s = status({ pending: true });
  assert.deepEqual(kinds(opcacheWarnings(null, s, now - RESTART_PENDING_MS + 1000, now, 10)), []);
  const late = opcacheWarnings(null, s, now - RESTART_PENDING_MS, now, 10);
  assert.deepEqual(kinds(late), ["opcache_restart_pending"]);
  assert.match(late[0]!.message, /waited 5 min for a restart/);
  assert.match(late[0]!.advice, /reload php-fpm/);
  assert.deepEqual(kinds(opcacheWarnings(null, status(), now - 3_600_000, now, 10)), []);
});

Deno.test("opcache: a hit rate that falls by warn_opcache_hit_drop points warns; a reset or few lookups do not", () => {
  const now = 1_700_000_000_000;
  const before = status({ hits: 99_000, misses: 1000 }); // 99%
  // 1000 lookups since, 850 hits: 85%, 14 points down
  const fell = opcacheWarnings(before, status({ hits: 99_850, misses: 1150 }), null, now, 10);
  assert.deepEqual(kinds(fell), ["opcache_hit_rate"]);
  assert.match(
    fell[0]!.message,
    /fell to 85\.0% since the last read \(it was 99\.0%; 150 misses\)/,
  );
  assert.equal(fell[0]!.setting, null, "not full: no setting to blame");
  // 91%: 8 points down
  assert.deepEqual(
    kinds(opcacheWarnings(before, status({ hits: 99_910, misses: 1090 }), null, now, 10)),
    [],
  );
  // off
  assert.deepEqual(
    kinds(opcacheWarnings(before, status({ hits: 99_850, misses: 1150 }), null, now, 0)),
    [],
  );
  // 50 lookups say nothing
  assert.deepEqual(
    kinds(opcacheWarnings(before, status({ hits: 99_010, misses: 1040 }), null, now, 10)),
    [],
  );
  // php-fpm restarted: its counts start again
  assert.deepEqual(
    kinds(
      opcacheWarnings(before, status({ hits: 10, misses: 900, startTime: 1 }), null, now, 10),
    ),
    [],
  );
  // full: the fall is blamed on it, and names its setting
  const full = opcacheWarnings(
    before,
    status({ hits: 99_500, misses: 1500, full: true }),
    null,
    now,
    10,
  );
  assert.deepEqual(kinds(full), ["opcache_full", "opcache_hit_rate"]);
  assert.equal(full[1]!.setting, "opcache.memory_consumption");
});

Deno.test("opcache: read over FastCGI at the script's path; 404, a timeout and errors are sentences", async () => {
  const clock = new FakeClock();
  const target = {
    address: { transport: "unix" as const, path: "/run/php/php8.2-fpm.sock" },
    path: OPCACHE_SCRIPT,
    query: "",
  };
  const ok = scriptedFcgi(clock, [{ status: 200, body: opcacheJson({ full: true }) }]);
  const read = await readOpcache(target, 1000, ok);
  assert.ok(typeof read !== "string" && read.on && read.status.cacheFull);
  assert.equal(ok.calls[0]!.path, OPCACHE_SCRIPT);
  const missing = scriptedFcgi(clock, [{ status: 404, body: "File not found." }]);
  assert.match(await readOpcache(target, 1000, missing) as string, /did not find .* \(404\)/);
  const slow = scriptedFcgi(clock, [{ error: new DOMException("late", "TimeoutError") }]);
  assert.match(await readOpcache(target, 1000, slow) as string, /did not answer within 1000 ms/);
  const refused = scriptedFcgi(clock, [{ error: new Deno.errors.ConnectionRefused("refused") }]);
  assert.match(await readOpcache(target, 1000, refused) as string, /failed: .*refused/);
});

Deno.test("opcache: the script is asked for only when it is root's alone", async () => {
  assert.equal(await opcacheScriptProblem(debianFs(SCRIPT_INSTALLED), OPCACHE_SCRIPT), null);
  assert.match(
    (await opcacheScriptProblem(debianFs(), OPCACHE_SCRIPT))!,
    /php-relaunch-opcache\.php is missing: install it with sh scripts\/samples\.sh install/,
  );
  const writable = { ...SCRIPT_INSTALLED, modes: { [OPCACHE_SCRIPT]: 0o666 } };
  assert.match(
    (await opcacheScriptProblem(debianFs(writable), OPCACHE_SCRIPT))!,
    /is not root's alone/,
  );
  const folder = {
    ...SCRIPT_INSTALLED,
    modes: { ...SCRIPT_INSTALLED.modes, "/usr/local/share/php-relaunch": 0o777 },
  };
  assert.match(
    (await opcacheScriptProblem(debianFs(folder), OPCACHE_SCRIPT))!,
    /\/usr\/local\/share\/php-relaunch is not root's alone/,
  );
});
