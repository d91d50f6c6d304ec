/**
 * etcd auth against Debian's etcd: one member on loopback with auth enabled as the README says
 * (root, the php-relaunch role on the prefix, the php-relaunch user), tokens that expire after
 * 2 s; the client authenticates, sends its token, renews it once it expired, and a wrong password
 * or another prefix is refused.
 */
import assert from "node:assert/strict";
import { directEtcdPost, EtcdClient, EtcdRefused } from "../../src/act/etcd.ts";
import { freePort, waitFor } from "./stack.ts";

async function etcdctl(endpoint: string, ...args: string[]): Promise<string> {
  const out = await new Deno.Command("/usr/bin/etcdctl", {
    args: ["--endpoints", endpoint, ...args],
    env: { ETCDCTL_API: "3" },
    stdin: "null",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.ok(out.success, `etcdctl ${args.join(" ")}: ${text}`);
  return text;
}

Deno.test({
  name: "e2e: etcd auth: a token on every call, renewed once expired; a wrong password refused",
  ignore: !(await Deno.stat("/usr/bin/etcd").then(() => true, () => false)),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "php-relaunch-etcd-auth-" });
    const client = freePort();
    const peer = freePort();
    const url = `http://127.0.0.1:${client}`;
    const member = new Deno.Command("/usr/bin/etcd", {
      args: [
        "--name",
        "m1",
        "--data-dir",
        `${dir}/m1`,
        "--listen-client-urls",
        url,
        "--advertise-client-urls",
        url,
        "--listen-peer-urls",
        `http://127.0.0.1:${peer}`,
        "--initial-advertise-peer-urls",
        `http://127.0.0.1:${peer}`,
        "--initial-cluster",
        `m1=http://127.0.0.1:${peer}`,
        "--auth-token-ttl",
        "2",
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    try {
      const up = await waitFor(
        async () => {
          try {
            const r = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) });
            await r.body?.cancel();
            return r.status === 200;
          } catch {
            return false;
          }
        },
        30_000,
        200,
      );
      assert.ok(up !== null, "etcd answers");
      // as the README says
      await etcdctl(url, "user", "add", "root", "--new-user-password", "root-pw");
      await etcdctl(url, "role", "add", "php-relaunch");
      await etcdctl(
        url,
        "role",
        "grant-permission",
        "php-relaunch",
        "--prefix=true",
        "readwrite",
        "/php-relaunch/",
      );
      await etcdctl(url, "user", "add", "php-relaunch", "--new-user-password", "pr-pw");
      await etcdctl(url, "user", "grant-role", "php-relaunch", "php-relaunch");
      await etcdctl(url, "auth", "enable");

      const endpoints = [new URL(url)];
      // without auth: refused
      const anonymous = new EtcdClient(endpoints, directEtcdPost, 2000);
      const none = await anonymous.list("/php-relaunch/").catch((e) => e);
      assert.ok(none instanceof EtcdRefused, String(none));

      const calls: string[] = [];
      const post: typeof directEtcdPost = (u, json, signal, headers) => {
        calls.push(u.pathname);
        return directEtcdPost(u, json, signal, headers);
      };
      const etcd = new EtcdClient(endpoints, post, 2000, {
        user: "php-relaunch",
        password: "pr-pw",
      });
      const lease = await etcd.grant(15_000);
      await etcd.put("/php-relaunch/failing/web1/php", "x", lease);
      assert.equal(await etcd.putIfAbsent("/php-relaunch/fleet-alert", "web1", lease), true);
      assert.deepEqual((await etcd.list("/php-relaunch/")).map((k) => k.key), [
        "/php-relaunch/failing/web1/php",
        "/php-relaunch/fleet-alert",
      ]);
      assert.equal(calls.filter((p) => p === "/v3/auth/authenticate").length, 1);
      // outside its prefix: permission denied, not a token problem
      const outside = await etcd.put("/other/x", "x", lease).catch((e) => e);
      assert.ok(outside instanceof EtcdRefused, String(outside));
      assert.match(outside.message, /permission denied/);
      assert.equal(calls.filter((p) => p === "/v3/auth/authenticate").length, 1);
      // the token expires (2 s here): renewed once, the call goes through
      await new Promise((r) => setTimeout(r, 3500));
      await etcd.delete("/php-relaunch/failing/web1/php");
      assert.equal(calls.filter((p) => p === "/v3/auth/authenticate").length, 2);
      assert.deepEqual((await etcd.list("/php-relaunch/")).map((k) => k.key), [
        "/php-relaunch/fleet-alert",
      ]);
      await etcd.revoke(lease);

      const wrong = new EtcdClient(endpoints, directEtcdPost, 2000, {
        user: "php-relaunch",
        password: "nope",
      });
      const refused = await wrong.list("/php-relaunch/").catch((e) => e);
      assert.ok(refused instanceof EtcdRefused, String(refused));
      assert.match(refused.message, /authentication failed/);
    } finally {
      try {
        member.kill("SIGKILL");
      } catch { /* gone */ }
      await member.status;
      await Deno.remove(dir, { recursive: true });
    }
  },
});
