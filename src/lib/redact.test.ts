import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { loadDlqConfig } from "../dlq/config.js";
import { ConfigError } from "./config.js";
import { maskUrl } from "./redact.js";
import { parseRedisAddress } from "./redis.js";

/**
 * Each row: a value as someone might write it (or as an attacker might store it), what we print, and
 * the pieces of secret that must never be printed.
 */
const rows: { value: string; masked: string; secrets: string[] }[] = [
  // A password holding `@`, `:` and `/`, raw or percent-encoded, is masked whole.
  { value: "redis://bob:p@ss@host:6379", masked: "redis://bob:***@host:6379", secrets: ["p@ss", "ss@"] },
  {
    value: "redis://bob:pa@s:w/rd@host:6379/0",
    masked: "redis://bob:***@host:6379/0",
    secrets: ["pa@", "s:w", "w/rd", "rd@"],
  },
  { value: "redis://bob:12/xy@host:6379", masked: "redis://bob:***@host:6379", secrets: ["12", "xy"] },
  {
    value: "redis://bob:p%40ss%3Aw%2Frd@host:6379",
    masked: "redis://bob:***@host:6379",
    secrets: ["p%40", "w%2Frd"],
  },
  { value: "rediss://:s3cret@host", masked: "rediss://:***@host", secrets: ["s3cret"] },
  // base64-made passwords end in `=` and hold `/` and `+`.
  { value: "redis://bob:ab/c+d==@host", masked: "redis://bob:***@host", secrets: ["ab/c", "+d=="] },
  // `?` and `#` in a password, even followed by `=`.
  { value: "redis://bob:pa?ss@host", masked: "redis://bob:***@host", secrets: ["pa?", "ss"] },
  { value: "redis://bob:pa?s=s#t@host", masked: "redis://bob:***@host", secrets: ["pa", "s=s", "#t"] },
  // No scheme: the original's `host:port` form, with credentials.
  { value: "bob:secret@host:6379", masked: "bob:***@host:6379", secrets: ["secret"] },
  { value: "bob:se@cr/et@host:6379", masked: "bob:***@host:6379", secrets: ["se@", "cr/et"] },
  { value: ":secret@host:bad", masked: ":***@host:bad", secrets: ["secret"] },
  // A lone userinfo is often a token (`https://<token>@host`).
  { value: "redis://tok3n@host", masked: "redis://***@host", secrets: ["tok3n"] },
  // Secret-looking query parameters, in any case, in the query or the fragment.
  {
    value: "http://u:p4ss@sink/path?token=abc&x=1",
    masked: "http://u:***@sink/path?token=***&x=1",
    secrets: ["p4ss", "abc"],
  },
  {
    value:
      "http://app/x?Access_Token=t1&SIG=t2&signature=t3&Password=t4&secret=t5&KEY=t6&api_key=t7&client_secret=t8&y=ok",
    masked:
      "http://app/x?Access_Token=***&SIG=***&signature=***&Password=***&secret=***&KEY=***&api_key=***&client_secret=***&y=ok",
    secrets: ["t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8"],
  },
  {
    value: "http://app/#access_token=t9&state=1",
    masked: "http://app/#access_token=***&state=1",
    secrets: ["t9"],
  },
  { value: "http://app/?tok%65n=t10", masked: "http://app/?tok%65n=***", secrets: ["t10"] },
  {
    value: "http://app/?token=a%26b;secret=c",
    masked: "http://app/?token=***;secret=***",
    secrets: ["a%26b", "=c"],
  },
  // Malformed URLs that `new URL` refuses are masked all the same.
  { value: "http://[bad/?token=t11", masked: "http://[bad/?token=***", secrets: ["t11"] },
  { value: "http:/u:p4ss@host?token=t12", masked: "http:/u:***@host?token=***", secrets: ["p4ss", "t12"] },
  { value: "/path?token=t13&b=2", masked: "/path?token=***&b=2", secrets: ["t13"] },
  // What must stay as it is: no secret in it, or already masked.
  { value: "http://app/users/@me", masked: "http://app/users/@me", secrets: [] },
  { value: "http://app/x?email=a@b.com", masked: "http://app/x?email=a@b.com", secrets: [] },
  {
    value: "http://u:p4ss@app/x?email=a@b.com",
    masked: "http://u:***@app/x?email=a@b.com",
    secrets: ["p4ss"],
  },
  { value: "127.0.0.1:6379", masked: "127.0.0.1:6379", secrets: [] },
  { value: "redis://[::1]:6379/2", masked: "redis://[::1]:6379/2", secrets: [] },
  { value: "redis://bob:***@host:6379", masked: "redis://bob:***@host:6379", secrets: [] },
  { value: "http://app/?token=***", masked: "http://app/?token=***", secrets: [] },
  { value: "http://app/?token&monkey=1", masked: "http://app/?token&monkey=1", secrets: [] },
  { value: "5m", masked: "5m", secrets: [] },
  { value: "", masked: "", secrets: [] },
];

describe("maskUrl", () => {
  for (const row of rows) {
    test(JSON.stringify(row.value), () => {
      const masked = maskUrl(row.value);
      assert.equal(masked, row.masked);
      for (const secret of row.secrets) assert.ok(!masked.includes(secret), `${secret} in ${masked}`);
      assert.equal(maskUrl(masked), masked, "masking twice changes nothing");
    });
  }
});

describe("Redis addresses: connected with the password, shown without it", () => {
  const table: { address: string; display: string; username?: string; password: string }[] = [
    {
      address: "redis://bob:p@ss@host:6379",
      display: "redis://bob:***@host:6379",
      username: "bob",
      password: "p@ss",
    },
    {
      address: "redis://bob:se/cr@t:x@host",
      display: "redis://bob:***@host:6379",
      username: "bob",
      password: "se/cr@t:x",
    },
    { address: "redis://:p%40ss%2Fw@host:7000/3", display: "redis://:***@host:7000/3", password: "p@ss/w" },
    {
      address: "bob:s3cr@t@10.0.0.1:6380",
      display: "bob:***@10.0.0.1:6380",
      username: "bob",
      password: "s3cr@t",
    },
    {
      address: "rediss://bob:pa?s=s#t@host",
      display: "rediss://bob:***@host:6379",
      username: "bob",
      password: "pa?s=s#t",
    },
  ];
  for (const row of table) {
    test(row.address, () => {
      const settings = parseRedisAddress(row.address);
      assert.equal(settings.display, row.display);
      assert.equal(settings.password, row.password);
      assert.equal(settings.username, row.username);
      assert.equal(settings.host, row.address.includes("10.0.0.1") ? "10.0.0.1" : "host");
    });
  }
});

describe("a bad REDIS_ADDRESS: one line naming it, never the password", () => {
  const bad = [
    { address: "bob:Zq9s3cret@host:notaport", secret: "Zq9", shown: "bob:***@host:notaport" },
    { address: "redis://bob:Zq9@Kx7@host:bad", secret: "Kx7", shown: "redis://bob:***@host:bad" },
    { address: "redis://bob:Zq9/Kx7@host:bad", secret: "Kx7", shown: "redis://bob:***@host:bad" },
    { address: "ftp://bob:Zq9Kx7@host", secret: "Zq9", shown: "ftp://bob:***@host" },
    { address: "redis://bob:Zq9Kx7@host/x", secret: "Zq9", shown: "redis://bob:***@host/x" },
  ];
  for (const row of bad) {
    test(row.address, () => {
      assert.throws(
        () => loadDlqConfig({ REDIS_ADDRESS: row.address }),
        (err: Error) => {
          assert.ok(err instanceof ConfigError);
          assert.match(err.message, /REDIS_ADDRESS: not a Redis address/);
          assert.ok(err.message.includes(JSON.stringify(row.shown)), err.message);
          assert.ok(!err.message.includes(row.secret), err.message);
          assert.ok(!err.message.includes("\n"));
          return true;
        },
      );
    });
  }
});
