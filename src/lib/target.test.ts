import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { AsyncError, ErrorCode } from "./errors.js";
import {
  checkTargetUrl,
  isClusterLocalService,
  parseHostPattern,
  producerHostPatterns,
  resolveTarget,
  type TargetRules,
  targetResolver,
  targetRulesFromEnv,
} from "./target.js";

const rules: TargetRules = {
  allowed: ["localhost:9999", "*.example.test", "[::1]", "127.0.0.1"].map(parseHostPattern),
  forbidden: [
    ...producerHostPatterns("async-producer", "knative-serving"),
    parseHostPattern("127.0.0.1:8081"),
  ],
};

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    assert.ok(err instanceof AsyncError, `expected an AsyncError, got ${String(err)}`);
    return err.code;
  }
}

describe("resolveTarget", () => {
  const cases: { name: string; host?: string[]; url?: string; want: string }[] = [
    {
      name: "service.namespace.svc.cluster.local",
      host: ["app.default.svc.cluster.local"],
      url: "/a?b=c",
      want: "http://app.default.svc.cluster.local/a?b=c",
    },
    {
      name: "short .svc form with a port",
      host: ["app.ns-1.svc:8080"],
      url: "/",
      want: "http://app.ns-1.svc:8080/",
    },
    { name: "upper case is lowered", host: ["App.Default.SVC"], url: "/x", want: "http://app.default.svc/x" },
    { name: "allow-list host:port", host: ["localhost:9999"], url: "/x", want: "http://localhost:9999/x" },
    { name: "allow-list wildcard", host: ["a.b.example.test"], url: "/", want: "http://a.b.example.test/" },
    {
      name: "allow-list host without port matches any port",
      host: ["127.0.0.1:3000"],
      url: "/",
      want: "http://127.0.0.1:3000/",
    },
    { name: "allow-list IPv6", host: ["[::1]:8080"], url: "/", want: "http://[::1]:8080/" },
    {
      name: "a path that looks like an authority stays a path",
      host: ["app.default.svc"],
      url: "//evil.com/x",
      want: "http://app.default.svc//evil.com/x",
    },
    { name: "missing header", url: "/", want: ErrorCode.BadTarget },
    {
      name: "two headers",
      host: ["app.default.svc", "app.default.svc"],
      url: "/",
      want: ErrorCode.BadTarget,
    },
    { name: "empty host", host: [""], url: "/", want: ErrorCode.BadTarget },
    { name: "userinfo", host: ["user@app.default.svc"], url: "/", want: ErrorCode.BadTarget },
    { name: "host with a path", host: ["app.default.svc/x"], url: "/", want: ErrorCode.BadTarget },
    { name: "bad characters", host: ["app .default.svc"], url: "/", want: ErrorCode.BadTarget },
    { name: "empty label", host: ["app..svc"], url: "/", want: ErrorCode.BadTarget },
    { name: "port 0", host: ["app.default.svc:0"], url: "/", want: ErrorCode.BadTarget },
    { name: "port too large", host: ["app.default.svc:70000"], url: "/", want: ErrorCode.BadTarget },
    { name: "empty port", host: ["app.default.svc:"], url: "/", want: ErrorCode.BadTarget },
    {
      name: "absolute-form request target",
      host: ["app.default.svc"],
      url: "http://evil.com/",
      want: ErrorCode.BadTarget,
    },
    { name: "asterisk-form request target", host: ["app.default.svc"], url: "*", want: ErrorCode.BadTarget },
    { name: "external host", host: ["example.com"], url: "/", want: ErrorCode.ForbiddenTarget },
    { name: "an IP not on the list", host: ["10.0.0.1:80"], url: "/", want: ErrorCode.ForbiddenTarget },
    { name: "allow-list port mismatch", host: ["localhost:9998"], url: "/", want: ErrorCode.ForbiddenTarget },
    { name: "wildcard needs a subdomain", host: ["example.test"], url: "/", want: ErrorCode.ForbiddenTarget },
    { name: "too many labels before svc", host: ["a.b.c.svc"], url: "/", want: ErrorCode.ForbiddenTarget },
    {
      name: "svc is not the cluster domain",
      host: ["app.default.svc.example.com"],
      url: "/",
      want: ErrorCode.ForbiddenTarget,
    },
    {
      name: "label longer than 63",
      host: [`${"a".repeat(64)}.default.svc`],
      url: "/",
      want: ErrorCode.ForbiddenTarget,
    },
    {
      name: "the producer itself",
      host: ["async-producer.knative-serving.svc.cluster.local"],
      url: "/",
      want: ErrorCode.ForbiddenTarget,
    },
    {
      name: "the producer itself, short form with port",
      host: ["async-producer.knative-serving.svc:80"],
      url: "/",
      want: ErrorCode.ForbiddenTarget,
    },
    {
      name: "a self host wins over the allow-list",
      host: ["127.0.0.1:8081"],
      url: "/",
      want: ErrorCode.ForbiddenTarget,
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      if (c.want.startsWith("http://")) {
        assert.equal(resolveTarget(c.host, c.url, rules).url, c.want);
      } else {
        assert.equal(
          codeOf(() => resolveTarget(c.host, c.url, rules)),
          c.want,
        );
      }
    });
  }

  test("targetResolver remembers hosts but answers every case as resolveTarget does", () => {
    // A tiny cache, so that it also starts over while the cases run.
    const resolve = targetResolver(rules, 3);
    for (let pass = 1; pass <= 3; pass++) {
      for (const c of cases) {
        const want = c.want.startsWith("http://") ? c.want : undefined;
        if (want) assert.equal(resolve(c.host, c.url).url, want, `${c.name}, pass ${pass}`);
        else
          assert.equal(
            codeOf(() => resolve(c.host, c.url)),
            c.want,
            `${c.name}, pass ${pass}`,
          );
        // A remembered host with another request target: the target is still checked.
        if (want) {
          assert.equal(resolve(c.host, "/other?q=1").url, `${new URL(want).origin}/other?q=1`);
          assert.equal(
            codeOf(() => resolve(c.host, "http://evil.com/")),
            ErrorCode.BadTarget,
          );
          assert.equal(
            codeOf(() => resolve(c.host, undefined)),
            ErrorCode.BadTarget,
          );
        }
      }
    }
  });
});

test("isClusterLocalService follows DNS-1123 labels", () => {
  assert.equal(isClusterLocalService("my-app.team-a.svc.cluster.local"), true);
  assert.equal(isClusterLocalService("my-app.team-a.svc"), true);
  assert.equal(isClusterLocalService("-app.team-a.svc"), false);
  assert.equal(isClusterLocalService("app.team-.svc"), false);
  assert.equal(isClusterLocalService("app.team.svc.cluster"), false);
});

test("parseHostPattern accepts host, host:port and *.suffix, and refuses the rest", () => {
  assert.deepEqual(parseHostPattern("localhost"), { host: "localhost", wildcard: false });
  assert.deepEqual(parseHostPattern(" Localhost:80 "), { host: "localhost", wildcard: false, port: 80 });
  assert.deepEqual(parseHostPattern("*.example.test:81"), {
    host: ".example.test",
    wildcard: true,
    port: 81,
  });
  for (const bad of ["*", "*.", "http://x", "a/b", "x:y", "a*.b", "user@x", ""]) {
    assert.throws(() => parseHostPattern(bad), /is not host/, bad);
  }
});

test("the Kubernetes API and kube-system are never targets", () => {
  assert.equal(isClusterLocalService("kubernetes.default.svc"), false);
  assert.equal(isClusterLocalService("kubernetes.default.svc.cluster.local"), false);
  assert.equal(isClusterLocalService("kube-dns.kube-system.svc.cluster.local"), false);
  assert.equal(isClusterLocalService("kubernetes.team-a.svc"), true, "only the API server's own Service");
});

describe("the rule at delivery, with service ports and the system namespace", () => {
  const strict = targetRulesFromEnv(
    {
      ALLOWED_TARGET_HOSTS: ["127.0.0.1:9999", "*.example.test"].map(parseHostPattern),
      TARGET_PORTS: [80, 443],
      SYSTEM_NAMESPACE: "knative-serving",
    },
    [parseHostPattern("redis.redis.svc.cluster.local:6379"), parseHostPattern("127.0.0.1:6379")],
  );
  const rows: { url: string; want: "ok" | string }[] = [
    { url: "http://app.default.svc.cluster.local/x?y=1", want: "ok" },
    { url: "http://app.default.svc:80/", want: "ok" },
    { url: "https://app.default.svc/", want: "ok" },
    { url: "https://app.default.svc:443/", want: "ok" },
    { url: "http://app.default.svc:8080/", want: ErrorCode.ForbiddenTarget },
    { url: "http://redis.redis.svc.cluster.local:6379/", want: ErrorCode.ForbiddenTarget },
    { url: "http://redis.redis.svc.cluster.local/", want: "ok" },
    { url: "http://async-consumer.knative-serving.svc.cluster.local/", want: ErrorCode.ForbiddenTarget },
    { url: "http://activator-service.knative-serving.svc/", want: ErrorCode.ForbiddenTarget },
    { url: "http://kubernetes.default.svc/api", want: ErrorCode.ForbiddenTarget },
    { url: "http://kube-dns.kube-system.svc/", want: ErrorCode.ForbiddenTarget },
    { url: "http://169.254.169.254/latest/meta-data", want: ErrorCode.ForbiddenTarget },
    { url: "http://metadata.google.internal/", want: ErrorCode.ForbiddenTarget },
    { url: "http://127.0.0.1:9999/ok", want: "ok" },
    { url: "http://127.0.0.1:6379/", want: ErrorCode.ForbiddenTarget },
    { url: "http://127.0.0.1:9998/", want: ErrorCode.ForbiddenTarget },
    { url: "http://anything.example.test:7000/", want: "ok" },
    { url: "http://user:pw@app.default.svc/", want: ErrorCode.BadTarget },
    { url: "http://app.default.svc%2e/", want: ErrorCode.BadTarget },
    { url: "ftp://app.default.svc/", want: ErrorCode.BadTarget },
    { url: "/relative", want: ErrorCode.BadTarget },
  ];
  for (const row of rows) {
    test(`${row.url} -> ${row.want}`, () => {
      const got = codeOf(() => checkTargetUrl(row.url, strict)) ?? "ok";
      assert.equal(got, row.want);
    });
  }

  test("ingest applies the same rule: a service port and the system namespace", () => {
    assert.equal(
      codeOf(() => resolveTarget(["app.ns.svc:8080"], "/", strict)),
      ErrorCode.ForbiddenTarget,
    );
    assert.equal(
      codeOf(() => resolveTarget(["app.ns.svc:80"], "/", strict)),
      undefined,
    );
    assert.equal(
      codeOf(() => resolveTarget(["webhook.knative-serving.svc"], "/", strict)),
      ErrorCode.ForbiddenTarget,
    );
  });
});
