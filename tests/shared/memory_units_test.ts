import assert from "node:assert/strict";
import {
  humanKb,
  kibibytes,
  megabytes,
  megabytesOfKb,
  megabytesTenths,
} from "../../src/shared/memory_units.ts";

Deno.test("memory units: whole megabytes, from bytes and from kB, rounded to the nearest", () => {
  assert.equal(megabytes(0), "0 MB");
  assert.equal(megabytes(512 * 2 ** 20), "512 MB");
  assert.equal(megabytes(1.5 * 2 ** 20), "2 MB");
  assert.equal(megabytes(1.49 * 2 ** 20), "1 MB");
  assert.equal(megabytes(8 * 2 ** 30), "8192 MB");
  assert.equal(megabytesOfKb(0), "0 MB");
  assert.equal(megabytesOfKb(524_288), "512 MB");
  assert.equal(megabytesOfKb(1536), "2 MB");
  assert.equal(megabytesOfKb(1535), "1 MB");
  // the same count, either way
  for (const kb of [1, 511, 512, 30_000, 2_001_760]) {
    assert.equal(megabytesOfKb(kb), megabytes(kb * 1024));
  }
});

Deno.test("memory units: megabytes to one decimal, and kibibytes", () => {
  assert.equal(megabytesTenths(0), "0.0 MB");
  assert.equal(megabytesTenths(128 * 2 ** 20), "128.0 MB");
  assert.equal(megabytesTenths(1_310_720), "1.3 MB");
  assert.equal(megabytesTenths(12.25 * 2 ** 20), "12.3 MB");
  assert.equal(kibibytes(0), "0 KiB");
  assert.equal(kibibytes(16 * 1024), "16 KiB");
  assert.equal(kibibytes(1535), "1 KiB");
});

Deno.test("memory units: GiB from 1 GiB up, whole MiB below", () => {
  assert.equal(humanKb(2001760), "1.9 GiB");
  assert.equal(humanKb(412000), "402 MiB");
  assert.equal(humanKb(1024 * 1024), "1.0 GiB");
  assert.equal(humanKb(1024 * 1024 - 1), "1024 MiB");
  assert.equal(humanKb(0), "0 MiB");
});
