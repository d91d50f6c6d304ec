import assert from "node:assert/strict";
import {
  directEtcdPost,
  EtcdClient,
  EtcdRefused,
  EtcdUnreachable,
  fromBase64,
  MAX_ETCD_ANSWER,
  prefixEnd,
  toBase64,
} from "../../src/act/etcd.ts";
import type { EtcdPost } from "../../src/shared/deps.ts";
import { fetchErrors } from "../support/fakes.ts";
import { FakeEtcd } from "../support/fake_etcd.ts";

Deno.test("etcd: keys in base64, and a prefix's range ends just past it", () => {
  assert.equal(toBase64("/x/a"), "L3gvYQ==");
  assert.equal(
    fromBase64(toBase64("/php-relaunch/failing/wéb1/t")),
    "/php-relaunch/failing/wéb1/t",
  );
  assert.equal(fromBase64(prefixEnd("/x/")), "/x0");
});

Deno.test("etcd: the members are tried in order, and the one that answered is asked first", async () => {
  const fake = new FakeEtcd();
  const asked: string[] = [];
  const post: EtcdPost = (url, json, signal) => {
    asked.push(url.host);
    return url.port === "2379"
      ? Promise.reject(fetchErrors.refused())
      : fake.post(url, json, signal);
  };
  const client = new EtcdClient(
    [new URL("http://127.0.0.1:2379"), new URL("http://127.0.0.1:22379")],
    post,
    500,
  );
  const lease = await client.grant(15_000);
  await client.put("/p/failing/a/t", "x", lease);
  assert.deepEqual(asked, ["127.0.0.1:2379", "127.0.0.1:22379", "127.0.0.1:22379"]);
  assert.equal(await client.putIfAbsent("/p/fleet-alert", "a", lease), true);
  assert.equal(await client.putIfAbsent("/p/fleet-alert", "b", lease), false);
  assert.deepEqual((await client.list("/p/")).map((k) => k.key), [
    "/p/failing/a/t",
    "/p/fleet-alert",
  ]);
  await client.revoke(lease);
  assert.deepEqual(await client.list("/p/"), []);
  assert.equal(await client.keepAlive(lease), false);
  await assert.rejects(client.put("/p/x", "x", lease), EtcdRefused);
});

Deno.test("etcd: a member that never answers costs its timeout, then the call fails", async () => {
  const ac = new AbortController();
  const never = Promise.withResolvers<void>();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen: () => {} },
    async () => {
      await never.promise;
      return new Response("{}");
    },
  );
  try {
    const client = new EtcdClient(
      [new URL(`http://127.0.0.1:${server.addr.port}`)],
      directEtcdPost,
      300,
    );
    const started = Date.now();
    const err = await client.grant(15_000).catch((e) => e);
    const ms = Date.now() - started;
    assert.ok(err instanceof EtcdUnreachable, String(err));
    assert.match(err.message, /no answer within 300 ms/);
    assert.ok(ms >= 250 && ms < 3000, `took ${ms} ms`);
  } finally {
    never.resolve();
    ac.abort();
    await server.finished;
  }
});

Deno.test("etcd: an answer larger than the bound is refused, not read whole", async () => {
  const ac = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen: () => {} },
    () => new Response("x".repeat(MAX_ETCD_ANSWER + 10)),
  );
  try {
    const client = new EtcdClient(
      [new URL(`http://127.0.0.1:${server.addr.port}`)],
      directEtcdPost,
      2000,
    );
    const err = await client.list("/p/").catch((e) => e);
    assert.ok(err instanceof EtcdUnreachable, String(err));
    assert.match(err.message, /larger than/);
  } finally {
    ac.abort();
    await server.finished;
  }
});

const AUTH = { user: "php-relaunch", password: "s3cret-pw" };

Deno.test("etcd auth: one token asked for, then sent with every call", async () => {
  const fake = new FakeEtcd().withAuth({ [AUTH.user]: AUTH.password });
  const client = new EtcdClient([new URL("http://127.0.0.1:2379")], fake.post, 500, AUTH);
  const lease = await client.grant(15_000);
  await client.put("/p/a", "x", lease);
  assert.deepEqual((await client.list("/p/")).map((k) => k.key), ["/p/a"]);
  assert.deepEqual(fake.calls, [
    "/v3/auth/authenticate",
    "/v3/lease/grant",
    "/v3/kv/put",
    "/v3/kv/range",
  ]);
  const token = [...fake.tokens][0]!;
  assert.deepEqual(fake.tokensSent, ["", token, token, token]);
});

Deno.test("etcd auth: without a token etcd refuses, as a client without auth finds", async () => {
  const fake = new FakeEtcd().withAuth({ [AUTH.user]: AUTH.password });
  const client = new EtcdClient([new URL("http://127.0.0.1:2379")], fake.post, 500);
  const err = await client.grant(15_000).catch((e) => e);
  assert.ok(err instanceof EtcdRefused, String(err));
  assert.match(err.message, /user name is empty/);
});

Deno.test("etcd auth: an expired token is renewed once and the call made again", async () => {
  const fake = new FakeEtcd().withAuth({ [AUTH.user]: AUTH.password });
  const client = new EtcdClient([new URL("http://127.0.0.1:2379")], fake.post, 500, AUTH);
  const lease = await client.grant(15_000);
  fake.expireTokens();
  fake.calls.length = 0;
  await client.put("/p/a", "x", lease);
  assert.deepEqual(fake.calls, ["/v3/kv/put", "/v3/auth/authenticate", "/v3/kv/put"]);
  assert.deepEqual(fake.keys("/p/"), ["/p/a"]);
  // a token refused right after it was given is not asked for again and again
  fake.calls.length = 0;
  const always: EtcdPost = (url, json, signal, headers) => {
    if (url.pathname !== "/v3/auth/authenticate") fake.expireTokens();
    return fake.post(url, json, signal, headers);
  };
  const stubborn = new EtcdClient([new URL("http://127.0.0.1:2379")], always, 500, AUTH);
  const err = await stubborn.put("/p/b", "x", lease).catch((e) => e);
  assert.ok(err instanceof EtcdRefused, String(err));
  assert.match(err.message, /invalid auth token/);
  assert.deepEqual(fake.calls, ["/v3/auth/authenticate", "/v3/kv/put"]);
});

Deno.test("etcd auth: a wrong password is etcd's refusal, asked again on the next call", async () => {
  const fake = new FakeEtcd().withAuth({ [AUTH.user]: AUTH.password });
  const client = new EtcdClient([new URL("http://127.0.0.1:2379")], fake.post, 500, {
    user: AUTH.user,
    password: "wrong",
  });
  const err = await client.grant(15_000).catch((e) => e);
  assert.ok(err instanceof EtcdRefused, String(err));
  assert.match(err.message, /authentication failed/);
  await client.grant(15_000).catch(() => {});
  assert.deepEqual(fake.calls, ["/v3/auth/authenticate", "/v3/auth/authenticate"]);
});

Deno.test("etcd auth: the token goes as the authorization header over HTTP", async () => {
  const ac = new AbortController();
  const seen: (string | null)[] = [];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen: () => {} },
    (req) => {
      seen.push(req.headers.get("authorization"));
      return new URL(req.url).pathname === "/v3/auth/authenticate"
        ? Response.json({ token: "T0K.1" })
        : Response.json({ ID: "5", TTL: "15" });
    },
  );
  try {
    const client = new EtcdClient(
      [new URL(`http://127.0.0.1:${server.addr.port}`)],
      directEtcdPost,
      2000,
      AUTH,
    );
    assert.equal(await client.grant(15_000), "5");
    assert.deepEqual(seen, [null, "T0K.1"]);
  } finally {
    ac.abort();
    await server.finished;
  }
});
