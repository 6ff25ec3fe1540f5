/**
 * Where an async request goes, and whether it may go there.
 *
 * The target is `http://` + `Async-Original-Host` + the request's path and query, as in the original. Left
 * unchecked that is an open proxy: anyone who can reach the producer could make the cluster send requests
 * anywhere, later and with retries. So the host must be a cluster-local Service name
 * (`<name>.<namespace>.svc[.cluster.local]`) or match the operator's allow-list (for local use), and
 * never the producer itself, which would only loop.
 */
import { isIPv6 } from "node:net";
import { AsyncError, ErrorCode } from "../lib/errors.js";

/** An allow-list or deny-list entry: `host`, `host:port`, `*.suffix` or `*.suffix:port`. */
export interface HostPattern {
  /** The exact host, or for a wildcard the suffix including its leading dot (`.example.test`). */
  readonly host: string;
  readonly wildcard: boolean;
  /** When set, only this port matches; otherwise any port (and none). */
  readonly port?: number;
}

export interface TargetRules {
  /** Hosts allowed besides cluster-local Service names. */
  readonly allowed: readonly HostPattern[];
  /** Hosts that are never allowed, even when they match the rules above (the producer itself). */
  readonly forbidden: readonly HostPattern[];
}

export interface Target {
  /** The absolute URL the request will be replayed to. */
  readonly url: string;
  /** The host as sent, lower-cased, with its port if any: what the rules were checked against. */
  readonly authority: string;
}

// `host[:port]`: a bracketed IPv6 literal or a name of letters, digits, dots and hyphens. Everything
// else (userinfo, paths, spaces, percent-encoding) is rejected before any matching happens.
const AUTHORITY = /^(?:\[([0-9a-f:.]+)\]|([a-z0-9.-]+))(?::([0-9]{1,5}))?$/;
const NAME_LABEL = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/;
/** DNS-1123 label, the Kubernetes rule for Service and namespace names. */
const DNS_1123_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

interface Authority {
  readonly host: string;
  readonly port?: number;
}

function parseAuthority(text: string): Authority | undefined {
  const match = AUTHORITY.exec(text.toLowerCase());
  if (match === null) return undefined;
  const [, ipv6, name, portText] = match;
  let host: string;
  if (ipv6 !== undefined) {
    if (!isIPv6(ipv6)) return undefined;
    host = `[${ipv6}]`;
  } else {
    host = name as string;
    if (host.length > 253 || !host.split(".").every((label) => NAME_LABEL.test(label))) return undefined;
  }
  if (portText === undefined) return { host };
  const port = Number(portText);
  if (port < 1 || port > 65535) return undefined;
  return { host, port };
}

/** Parses one ALLOWED_TARGET_HOSTS (or self host) entry; throws an Error saying what is wrong. */
export function parseHostPattern(text: string): HostPattern {
  const trimmed = text.trim();
  const wildcard = trimmed.startsWith("*.");
  const authority = parseAuthority(wildcard ? trimmed.slice(2) : trimmed);
  if (authority === undefined) {
    throw new Error(`${JSON.stringify(text)} is not host, host:port, *.suffix or *.suffix:port`);
  }
  return {
    host: wildcard ? `.${authority.host}` : authority.host,
    wildcard,
    ...(authority.port === undefined ? {} : { port: authority.port }),
  };
}

function matches(pattern: HostPattern, target: Authority): boolean {
  if (pattern.port !== undefined && pattern.port !== target.port) return false;
  return pattern.wildcard ? target.host.endsWith(pattern.host) : target.host === pattern.host;
}

/** `<name>.<namespace>.svc` or `<name>.<namespace>.svc.cluster.local`, with DNS-1123 labels. */
export function isClusterLocalService(host: string): boolean {
  const labels = host.split(".");
  const suffixOk =
    (labels.length === 3 && labels[2] === "svc") ||
    (labels.length === 5 && labels[2] === "svc" && labels[3] === "cluster" && labels[4] === "local");
  if (!suffixOk || !DNS_1123_LABEL.test(labels[0] as string) || !DNS_1123_LABEL.test(labels[1] as string))
    return false;
  // The Kubernetes API and the system namespace are Services too, but never a Knative Service: no
  // async request has a reason to reach them, so they are refused like external hosts.
  return !(labels[1] === "kube-system" || (labels[0] === "kubernetes" && labels[1] === "default"));
}

/** The producer's own Service names (any port): requests to them would only come back here. */
export function producerHostPatterns(producerName: string, namespace: string): HostPattern[] {
  const base = `${producerName}.${namespace}.svc`.toLowerCase();
  return [
    { host: base, wildcard: false },
    { host: `${base}.cluster.local`, wildcard: false },
  ];
}

function badTarget(message: string): AsyncError {
  return new AsyncError(ErrorCode.BadTarget, message);
}

/**
 * Resolves and checks the target of an async request. `hostValues` are the `Async-Original-Host` header
 * values (Node's `headersDistinct`), `requestUrl` the request target as received (`req.url`).
 * Throws BadTarget (400) for a missing or malformed target, ForbiddenTarget (403) for one not allowed.
 */
export function resolveTarget(
  hostValues: readonly string[] | undefined,
  requestUrl: string | undefined,
  rules: TargetRules,
): Target {
  if (hostValues === undefined || hostValues.length === 0) {
    throw badTarget("missing Async-Original-Host header");
  }
  if (hostValues.length > 1) throw badTarget("more than one Async-Original-Host header");
  const raw = (hostValues[0] as string).trim();
  if (raw === "") throw badTarget("empty Async-Original-Host header");
  const authority = parseAuthority(raw);
  if (authority === undefined) {
    throw badTarget(`Async-Original-Host ${JSON.stringify(raw.slice(0, 100))} is not host[:port]`);
  }
  // Only origin-form ("/path?query") can be appended to a host; absolute-form ("http://x/") would let
  // the client name a second, unchecked target, and asterisk-form ("*") has no path at all.
  if (requestUrl === undefined || !requestUrl.startsWith("/")) {
    throw badTarget("the request target must be a path (origin-form), not an absolute URL");
  }
  const hostPort = authority.port === undefined ? authority.host : `${authority.host}:${authority.port}`;
  const url = targetUrl(hostPort, requestUrl);

  if (rules.forbidden.some((p) => matches(p, authority))) {
    throw new AsyncError(ErrorCode.ForbiddenTarget, `target ${hostPort} is the producer itself`);
  }
  if (!isClusterLocalService(authority.host) && !rules.allowed.some((p) => matches(p, authority))) {
    throw new AsyncError(
      ErrorCode.ForbiddenTarget,
      `target ${hostPort} is not a cluster-local service (<name>.<namespace>.svc[.cluster.local]) or an allowed host`,
    );
  }
  return { url, authority: hostPort };
}

/**
 * A path and query made only of these characters always forms a valid URL after a valid authority, so
 * the (comparatively slow) URL parser is asked only about the others.
 */
const PLAIN_PATH = /^\/[A-Za-z0-9\-._~!$&'()*+,;=:@%/?]*$/;

function targetUrl(hostPort: string, requestUrl: string): string {
  const url = `http://${hostPort}${requestUrl}`;
  // The leading "/" ends the authority, so nothing in the path can change the host that was checked;
  // the URL must still parse, or the consumer could not replay it.
  if (!PLAIN_PATH.test(requestUrl) && !URL.canParse(url)) {
    throw badTarget("the request target does not form a valid URL");
  }
  return url;
}

export type TargetResolver = (
  hostValues: readonly string[] | undefined,
  requestUrl: string | undefined,
) => Target;

/**
 * `resolveTarget` for one set of rules, remembering the host of each `Async-Original-Host` value it
 * allowed: the checks depend on nothing else, and a producer sees the same few values again and again.
 * At most `size` values are remembered (the cache starts over when full), so clients sending many
 * different hosts cost memory only up to that.
 */
export function targetResolver(rules: TargetRules, size = 1000): TargetResolver {
  const allowed = new Map<string, string>();
  return (hostValues, requestUrl) => {
    const raw = hostValues?.length === 1 ? (hostValues[0] as string) : undefined;
    const hostPort = raw === undefined ? undefined : allowed.get(raw);
    if (hostPort === undefined || requestUrl === undefined || !requestUrl.startsWith("/")) {
      const target = resolveTarget(hostValues, requestUrl, rules);
      if (raw !== undefined) {
        if (allowed.size >= size) allowed.clear();
        allowed.set(raw, target.authority);
      }
      return target;
    }
    return { url: targetUrl(hostPort, requestUrl), authority: hostPort };
  };
}
