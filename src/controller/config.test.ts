import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConfigError } from "../lib/config.js";
import { loadControllerConfig } from "./config.js";

describe("loadControllerConfig", () => {
  it("has the documented defaults", () => {
    const config = loadControllerConfig({});
    assert.equal(config.port, 8080);
    assert.equal(config.systemNamespace, "knative-serving");
    assert.equal(config.producerName, "async-producer");
    assert.equal(config.producerNamespace, "knative-serving");
    assert.equal(config.ingressClassName, "istio.ingress.networking.knative.dev");
    assert.equal(config.leaseName, "knative-async-controller");
    assert.equal(config.leaseDurationMs, 15_000);
    assert.equal(config.renewDeadlineMs, 10_000);
    assert.equal(config.retryPeriodMs, 2_000);
    assert.equal(config.workers, 2);
    assert.equal(config.streamName, "mystream");
    assert.equal(config.redis.host, "127.0.0.1");
    assert.equal(config.registryCheckPeriodMs, 30_000);
    assert.ok(Object.isFrozen(config));
  });

  it("puts the producer in SYSTEM_NAMESPACE unless PRODUCER_NAMESPACE says otherwise", () => {
    assert.equal(loadControllerConfig({ SYSTEM_NAMESPACE: "async" }).producerNamespace, "async");
    const config = loadControllerConfig({
      SYSTEM_NAMESPACE: "async",
      PRODUCER_NAMESPACE: "ingest",
      PRODUCER_NAME: "p",
    });
    assert.equal(config.producerNamespace, "ingest");
    assert.equal(config.producerName, "p");
  });

  it("accepts the Kourier and Contour classes", () => {
    for (const cls of ["kourier.ingress.networking.knative.dev", "contour.ingress.networking.knative.dev"]) {
      assert.equal(loadControllerConfig({ INGRESS_CLASS_NAME: cls }).ingressClassName, cls);
    }
  });

  it("refuses the async class as the real layer's class (it would loop)", () => {
    assert.throws(
      () => loadControllerConfig({ INGRESS_CLASS_NAME: "async.ingress.networking.knative.dev" }),
      (err: unknown) => err instanceof ConfigError && /INGRESS_CLASS_NAME/.test(err.message),
    );
  });

  it("refuses lease timings that would let two replicas lead", () => {
    assert.throws(
      () => loadControllerConfig({ LEASE_DURATION: "10s", RENEW_DEADLINE: "10s" }),
      /RENEW_DEADLINE: must be shorter than LEASE_DURATION/,
    );
    assert.throws(() => loadControllerConfig({ RENEW_DEADLINE: "2s", RETRY_PERIOD: "2s" }), /RETRY_PERIOD/);
  });

  it("names every bad variable on one line", () => {
    assert.throws(
      () => loadControllerConfig({ PRODUCER_NAME: "Not_A_Name", WORKERS: "0" }),
      (err: unknown) =>
        err instanceof ConfigError &&
        !err.message.includes("\n") &&
        err.message.includes("PRODUCER_NAME") &&
        err.message.includes("WORKERS"),
    );
  });
});
