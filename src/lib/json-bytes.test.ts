import assert from "node:assert/strict";
import { test } from "node:test";
import {
  jsonStringLength,
  skipJsonString,
  stringArraySpans,
  stringMemberSpan,
  unescapeJsonString,
  writeJsonString,
} from "./json-bytes.js";

/** Strings with everything JSON treats specially: every control character, quotes, backslashes, non-ASCII. */
const SAMPLES = [
  "",
  "plain ascii",
  '"',
  "\\",
  'a "quoted" \\ back\\slash',
  Array.from({ length: 32 }, (_, i) => String.fromCharCode(i)).join(""),
  "\u007f del, é ñ 中文 🚀, \u2028 \u2029",
  "/ slash </script>",
  "x".repeat(70_000),
];

/** A pseudo-random string over the characters that matter, for many more cases than the samples. */
function randomText(seed: number, length: number): string {
  const alphabet = ['"', "\\", "\n", "\t", "\u0001", "\u001f", "a", "Z", "é", "中", "🚀", "/", " ", "\u2028"];
  let state = seed;
  let out = "";
  for (let i = 0; i < length; i++) {
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    out += alphabet[state % alphabet.length];
  }
  return out;
}

const allSamples = [...SAMPLES, ...Array.from({ length: 50 }, (_, i) => randomText(i + 1, i * 7))];

test("writeJsonString writes the very bytes of JSON.stringify, and jsonStringLength counts them", () => {
  for (const text of allSamples) {
    const value = Buffer.from(text);
    const expected = Buffer.from(JSON.stringify(text));
    assert.equal(jsonStringLength(value), expected.length, JSON.stringify(text).slice(0, 40));
    const out = Buffer.alloc(expected.length + 4, 0xff);
    assert.equal(writeJsonString(value, out, 2), expected.length + 2);
    assert.deepEqual(out.subarray(2, 2 + expected.length), expected);
  }
});

test("unescapeJsonString gives the bytes of JSON.parse, a view of the same memory when nothing is escaped", () => {
  const escapedForms = [
    ...allSamples.map((text) => JSON.stringify(text)),
    '"\\u00e9\\u4E2D\\ud83d\\ude80 \\/ \\b\\f\\n\\r\\t"',
    // Lone surrogates become U+FFFD, as JSON.parse then Buffer.from make them.
    '"\\ud800 and \\udc00 and \\ud83d\\u0041"',
  ];
  for (const json of escapedForms) {
    const buf = Buffer.from(json);
    assert.equal(skipJsonString(buf, 0), buf.length, json.slice(0, 40));
    const bytes = unescapeJsonString(buf, { start: 1, end: buf.length - 1 });
    assert.deepEqual(bytes, Buffer.from(JSON.parse(json) as string), json.slice(0, 40));
  }
  const plain = Buffer.from('"no escapes here"');
  const view = unescapeJsonString(plain, { start: 1, end: plain.length - 1 });
  assert.equal(view.buffer, plain.buffer);
});

test("skipJsonString refuses what JSON.parse refuses", () => {
  for (const bad of [
    '"open',
    '"raw\ncontrol"',
    '"bad \\x escape"',
    '"\\u12"',
    '"\\u12G4"',
    '"ends in \\',
    '"\\',
  ]) {
    assert.equal(skipJsonString(Buffer.from(bad), 0), -1, bad);
    assert.throws(() => JSON.parse(bad));
  }
  assert.equal(skipJsonString(Buffer.from('"a" tail'), 0), 3);
});

test("stringMemberSpan finds the top-level member JSON.parse keeps, past nested look-alikes", () => {
  const cases: [string, string | undefined][] = [
    ['{"id":"1","body":"the body","x":2}', "the body"],
    [' { "body" : "spaced" } ', "spaced"],
    ['{"header":{"body":["not this"]},"list":[{"body":"nor this"}],"body":"this"}', "this"],
    ['{"body":"first","body":"last"}', "last"],
    ['{"b\\u006fdy":"escaped key"}', "escaped key"],
    ['{"n":-1.5e3,"t":true,"f":false,"z":null,"body":"after literals"}', "after literals"],
    ['{"s":"a \\" } { quote","body":"after a tricky string"}', "after a tricky string"],
    ['{"body":null}', undefined],
    ['{"body":"string","body":1}', undefined],
    ['{"other":"x"}', undefined],
    ["{}", undefined],
    ['["body","x"]', undefined],
    ['{"body" "missing colon"}', undefined],
    ['{"a":1 "body":"missing comma"}', undefined],
    ['{"body":"unterminated}', undefined],
  ];
  for (const [json, want] of cases) {
    const buf = Buffer.from(json);
    const span = stringMemberSpan(buf, "body");
    const got =
      span === undefined
        ? undefined
        : (JSON.parse(`"${buf.toString("utf8", span.start, span.end)}"`) as string);
    assert.equal(got, want, json);
  }
});

test("stringArraySpans reads exactly a JSON array of strings", () => {
  const list = ["data", '{"id":"x","body":"a \\"b\\""}', "attempts", "2", "", "é🚀"];
  const buf = Buffer.from(` ${JSON.stringify(list)}\n`);
  const spans = stringArraySpans(buf);
  assert.deepEqual(
    spans?.map((span) => unescapeJsonString(buf, span).toString()),
    list,
  );
  assert.deepEqual(stringArraySpans(Buffer.from("[]")), []);
  for (const bad of ["", "[", '["a",]', '["a" "b"]', '["a",1]', '["a"] x', '{"a":"b"}', '["a\n"]']) {
    assert.equal(stringArraySpans(Buffer.from(bad)), undefined, bad);
  }
});
