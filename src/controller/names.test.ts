import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  asyncServiceName,
  childIngressName,
  childName,
  ORIGINAL_HOST_HEADER,
  PREFER_ASYNC,
  PREFER_HEADER,
  PREFER_SYNC,
} from "./names.js";

describe("childName (knative.dev/pkg kmeta.ChildName)", () => {
  // The rows of knative.dev/pkg/kmeta/names_test.go.
  const knativeExamples: Array<{ parent: string; suffix: string; want: string }> = [
    { parent: "asdf", suffix: "-deployment", want: "asdf-deployment" },
    {
      parent: "f".repeat(63),
      suffix: "-deployment",
      want: "ffffffffffffffffffff105d7597f637e83cc711605ac3ea4957-deployment",
    },
    {
      parent: "f".repeat(63),
      suffix: "-deploy",
      want: "ffffffffffffffffffffffff105d7597f637e83cc711605ac3ea4957-deploy",
    },
    {
      parent: "f".repeat(63),
      suffix: "f".repeat(63),
      want: "fffffffffffffffffffffffffffffff0502661254f13c89973cb3a83e0cbec0",
    },
    {
      parent: "a",
      suffix: "f".repeat(63),
      want: "ab5cfd486935decbc0d305799f4ce4414ffffffffffffffffffffffffffffff",
    },
    {
      parent: "b".repeat(32),
      suffix: "f".repeat(32),
      want: "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb329c7c81b9ab3ba71aa139066aa5625d",
    },
    {
      parent: "aaaa",
      suffix: "b---a".repeat(20),
      want: "aaaa7a3f7966594e3f0849720eced8212c18b---ab---ab---ab---ab---ab",
    },
    {
      parent: "a".repeat(17),
      suffix: "a.-.-.-.-.-.-.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
      want: "aaaaaaaaaaaaaaaaaa1eb10dc911444f8434af83b7225442da",
    },
  ];
  for (const { parent, suffix, want } of knativeExamples) {
    it(`${parent.slice(0, 20)}… + ${suffix.slice(0, 20)}…`, () => {
      const got = childName(parent, suffix);
      assert.equal(got, want);
      assert.ok(got.length <= 63);
    });
  }

  it("keeps names that fit exactly", () => {
    assert.equal(childName("x".repeat(59), "-new"), `${"x".repeat(59)}-new`);
    assert.equal(childName("x".repeat(60), "-new").length, 63);
    assert.notEqual(childName("x".repeat(60), "-new"), `${"x".repeat(60)}-new`);
  });

  it("gives two long parents with the same prefix different children", () => {
    const a = childIngressName(`${"p".repeat(60)}-one`);
    const b = childIngressName(`${"p".repeat(60)}-two`);
    assert.notEqual(a, b);
    assert.ok(a.endsWith("-new") && b.endsWith("-new"));
  });
});

describe("child names", () => {
  it("uses the original's suffixes", () => {
    assert.equal(childIngressName("hello"), "hello-new");
    assert.equal(asyncServiceName("hello"), "hello-async");
  });
});

describe("header names on the KIngress", () => {
  it("keep the spelling existing clusters carry", () => {
    assert.deepEqual(
      [PREFER_HEADER, PREFER_ASYNC, PREFER_SYNC, ORIGINAL_HOST_HEADER],
      ["Prefer", "respond-async", "respond-sync", "Async-Original-Host"],
    );
  });
});
