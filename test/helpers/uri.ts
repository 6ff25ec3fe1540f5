/**
 * A strict RFC 3986 URI-reference check, built from the grammar of its Appendix A: what receivers with
 * strict parsers demand of `ce-source` (CloudEvents sdk-go refuses `127.0.0.1:6379/mystream`, "first path
 * segment in URL cannot contain colon", and answers 500). `new URL` is no judge: it repairs what the
 * grammar refuses (it percent-encodes a space or a `"` in a path) and refuses what the grammar allows
 * (a relative reference without a base).
 */

const ALPHA = "A-Za-z";
const DIGIT = "0-9";
const UNRESERVED = `${ALPHA}${DIGIT}\\-._~`;
const SUB_DELIMS = "!$&'()*+,;=";
const PCT_ENCODED = "%[0-9A-Fa-f]{2}";

const PCHAR = `(?:[${UNRESERVED}${SUB_DELIMS}:@]|${PCT_ENCODED})`;
const SEGMENT = `${PCHAR}*`;
const SEGMENT_NZ = `${PCHAR}+`;
const SEGMENT_NZ_NC = `(?:[${UNRESERVED}${SUB_DELIMS}@]|${PCT_ENCODED})+`;

const SCHEME = `[${ALPHA}][${ALPHA}${DIGIT}+\\-.]*`;
const USERINFO = `(?:[${UNRESERVED}${SUB_DELIMS}:]|${PCT_ENCODED})*`;
const DEC_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9][0-9]|[0-9])";
const IPV4 = `${DEC_OCTET}\\.${DEC_OCTET}\\.${DEC_OCTET}\\.${DEC_OCTET}`;
const H16 = "[0-9A-Fa-f]{1,4}";
const LS32 = `(?:${H16}:${H16}|${IPV4})`;
const IPV6 = [
  `(?:${H16}:){6}${LS32}`,
  `::(?:${H16}:){5}${LS32}`,
  `(?:${H16})?::(?:${H16}:){4}${LS32}`,
  `(?:(?:${H16}:){0,1}${H16})?::(?:${H16}:){3}${LS32}`,
  `(?:(?:${H16}:){0,2}${H16})?::(?:${H16}:){2}${LS32}`,
  `(?:(?:${H16}:){0,3}${H16})?::${H16}:${LS32}`,
  `(?:(?:${H16}:){0,4}${H16})?::${LS32}`,
  `(?:(?:${H16}:){0,5}${H16})?::${H16}`,
  `(?:(?:${H16}:){0,6}${H16})?::`,
]
  .map((alternative) => `(?:${alternative})`)
  .join("|");
const IPVFUTURE = `v[0-9A-Fa-f]+\\.[${UNRESERVED}${SUB_DELIMS}:]+`;
const IP_LITERAL = `\\[(?:${IPV6}|${IPVFUTURE})\\]`;
const REG_NAME = `(?:[${UNRESERVED}${SUB_DELIMS}]|${PCT_ENCODED})*`;
const HOST = `(?:${IP_LITERAL}|${IPV4}|${REG_NAME})`;
const AUTHORITY = `(?:${USERINFO}@)?${HOST}(?::[${DIGIT}]*)?`;

const PATH_ABEMPTY = `(?:/${SEGMENT})*`;
const PATH_ABSOLUTE = `/(?:${SEGMENT_NZ}(?:/${SEGMENT})*)?`;
const PATH_NOSCHEME = `${SEGMENT_NZ_NC}(?:/${SEGMENT})*`;
const PATH_ROOTLESS = `${SEGMENT_NZ}(?:/${SEGMENT})*`;
const QUERY = `(?:${PCHAR}|[/?])*`;
const FRAGMENT = QUERY;

const HIER_PART = `(?://${AUTHORITY}${PATH_ABEMPTY}|${PATH_ABSOLUTE}|${PATH_ROOTLESS}|)`;
const RELATIVE_PART = `(?://${AUTHORITY}${PATH_ABEMPTY}|${PATH_ABSOLUTE}|${PATH_NOSCHEME}|)`;
const TAIL = `(?:\\?${QUERY})?(?:#${FRAGMENT})?`;

const URI = new RegExp(`^${SCHEME}:${HIER_PART}${TAIL}$`);
const RELATIVE_REF = new RegExp(`^${RELATIVE_PART}${TAIL}$`);

/** True when `value` is an RFC 3986 URI-reference (`URI / relative-ref`). */
export function isUriReference(value: string): boolean {
  return URI.test(value) || RELATIVE_REF.test(value);
}

/** True when `value` is an RFC 3986 URI (absolute, with a scheme). */
export function isUri(value: string): boolean {
  return URI.test(value);
}
