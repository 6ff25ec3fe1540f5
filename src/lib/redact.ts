/**
 * The one masking function for every URL or address we log, put in an error message or print: Redis
 * addresses, K_SINK and DEAD_LETTER_SINK, stored request URLs, config values in errors.
 *
 * It works on the text, never through `new URL`: the values that most need masking are the ones a
 * parser refuses or reads differently (a password holding `@`, `/` or `?`, an address without a scheme,
 * a malformed stored URL). Where the text is ambiguous it masks more rather than less: a secret shown
 * costs more than a host hidden.
 */

const MASK = "***";

/**
 * `redis://bob:p@ss/w@host:6379` → `redis://bob:***@host:6379`; `bob:secret@host:6379` →
 * `bob:***@host:6379`; a lone userinfo (often a token: `https://<token>@host`) → `***@host`; and the
 * value of every secret-looking query or fragment parameter (`?token=…`, `&X-Amz-Signature=…`) → `***`.
 * Masking a masked value changes nothing.
 */
export function maskUrl(value: string): string {
  const authorityStart = startOfAuthority(value);
  if (authorityStart === undefined) return maskParameters(value);
  const rest = value.slice(authorityStart);
  const at = endOfUserinfo(rest);
  if (at < 0) return value.slice(0, authorityStart) + maskParameters(rest);
  const userinfo = rest.slice(0, at);
  const colon = userinfo.indexOf(":");
  const masked = colon < 0 ? MASK : `${userinfo.slice(0, colon)}:${MASK}`;
  return `${value.slice(0, authorityStart)}${masked}@${maskParameters(rest.slice(at + 1))}`;
}

/**
 * Where the authority (`[userinfo@]host[:port]`) starts: after `scheme:/` or `scheme://`, after `//`,
 * at 0 for an address without a scheme (`bob:secret@host:6379`); undefined for a bare path.
 */
function startOfAuthority(value: string): number | undefined {
  const prefix = /^[a-z][a-z0-9+.-]*:\/+/i.exec(value) ?? /^\/\//.exec(value);
  if (prefix) return prefix[0].length;
  return value.startsWith("/") ? undefined : 0;
}

/**
 * The index of the `@` that ends the userinfo in `rest` (the text from the authority on), or -1.
 *
 * RFC 3986 ends the authority at the first `/`, `?` or `#`, but a password written without
 * percent-encoding may hold any of them, and a path or query may hold an `@` (`/users/@me`,
 * `?email=a@b.com`). So: an `@` is taken as the end of the userinfo when it comes before any query
 * (a `?` or `#` followed by a `=`), and the first segment (up to the first `/`, `?` or `#`) holds an
 * `@` or a `:`, that is, looks like `user:password` or `host:port` rather than a plain host whose
 * path has an `@` in it. A first segment like `bob:pa` (a port that is not a number) can only be a
 * user and the start of a password, so then the last `@` anywhere ends it.
 */
function endOfUserinfo(rest: string): number {
  const lastAt = rest.lastIndexOf("@");
  if (lastAt < 0) return -1;
  const segmentEnd = rest.search(/[/?#]/);
  const first = segmentEnd < 0 ? rest : rest.slice(0, segmentEnd);
  const query = startOfQuery(rest);
  const at = query < 0 ? lastAt : rest.lastIndexOf("@", query);
  if (at >= 0 && /[@:]/.test(first)) return at;
  if (!first.includes("@") && /^[^[]*:(?!\d*$)/.test(first)) return lastAt;
  return -1;
}

/** The index of the first `?` or `#` that has a `=` after it, or -1. */
function startOfQuery(text: string): number {
  const equals = text.lastIndexOf("=");
  const start = text.search(/[?#]/);
  return start >= 0 && start < equals ? start : -1;
}

/**
 * Parameter names whose values are secrets: these words alone or at the end of a longer name
 * (`access_token`, `client_secret`, `X-Amz-Signature`, `api_key`), in any case, percent-decoded.
 */
const SECRET_PARAMETER =
  /(?:^|[_.-])(?:token|password|passwd|pwd|secret|key|apikey|sig|signature|auth|credentials?)$/i;

/** Masks the value of every secret-looking `name=value` after the first `?` or `#`. */
function maskParameters(text: string): string {
  const start = text.search(/[?#]/);
  if (start < 0) return text;
  const tail = text
    .slice(start)
    .replace(/([?#&;])([^=?#&;]*)=([^&;#]*)/g, (whole, separator: string, name: string, secret: string) =>
      secret !== "" && SECRET_PARAMETER.test(decodeLoosely(name)) ? `${separator}${name}=${MASK}` : whole,
    );
  return text.slice(0, start) + tail;
}

/** Percent-decoded, or as it is when it is not valid percent-encoding (`100%`). */
export function decodeLoosely(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
