/**
 * Where an async request goes, and whether it may go there: ONE rule, checked by the producer when it
 * accepts a request and again by the dispatcher and the consumer before they send it, since neither may
 * trust what reaches it (an entry written straight into the stream, or an event POSTed to the consumer).
 *
 * The target is `http://` + `Async-Original-Host` + the request's path and query, as in the original. Left
 * unchecked that is an open proxy: anyone who can reach the producer could make the cluster send requests
 * anywhere, later and with retries. So a target must be
 *  - a Knative Service's cluster-local name (`<name>.<namespace>.svc[.cluster.local]`) on one of its
 *    service ports (TARGET_PORTS, 80 and 443 by default), so that an async request can never speak HTTP
 *    at a Redis or any other TCP service; and not in the Kubernetes API's or the system namespaces (this
 *    project's components and Knative's own live in SYSTEM_NAMESPACE);
 *  - or a host the operator allowed (ALLOWED_TARGET_HOSTS, for local use), on the port the entry names or
 *    any port when it names none;
 *  - and never one of this project's own addresses or its Redis, whatever the rules above say.
 */
import { isIPv6 } from "node:net";
import { z } from "zod";
import { listSetting } from "./config.js";
import { AsyncError, ErrorCode } from "./errors.js";

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
  /** Hosts that are never allowed, even when they match the rules above (our own, our Redis). */
  readonly forbidden: readonly HostPattern[];
  /** Namespaces whose Services are never targets (the system namespace). */
  readonly forbiddenNamespaces?: readonly string[];
  /** Ports a cluster-local Service may be reached on; absent: any. */
  readonly servicePorts?: readonly number[];
}

/** Knative Services listen on these (plain HTTP and TLS). */
export const DEFAULT_SERVICE_PORTS: readonly number[] = [80, 443];

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

/**
 * True when `authorityText` (`host[:port]`) is one of `patterns`: the producer takes requests for an
 * allowed host without its being a registered async service (src/producer/services.ts).
 */
export function matchesHostPatterns(patterns: readonly HostPattern[], authorityText: string): boolean {
  const authority = parseAuthority(authorityText);
  return authority !== undefined && patterns.some((p) => matches(p, authority));
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

function forbidden(message: string): AsyncError {
  return new AsyncError(ErrorCode.ForbiddenTarget, message);
}

/**
 * The rule itself, for a parsed authority; `defaultPort` is the scheme's, for a target that names none.
 * Throws ForbiddenTarget (403) saying which part of the rule refused it.
 */
function checkAuthority(authority: Authority, defaultPort: number, rules: TargetRules): void {
  const hostPort = authority.port === undefined ? authority.host : `${authority.host}:${authority.port}`;
  if (rules.forbidden.some((p) => matches(p, authority))) {
    throw forbidden(`target ${hostPort} is one of this project's own addresses, never a target`);
  }
  if (rules.allowed.some((p) => matches(p, authority))) return;
  if (!isClusterLocalService(authority.host)) {
    throw forbidden(
      `target ${hostPort} is not a cluster-local service (<name>.<namespace>.svc[.cluster.local]) or an allowed host`,
    );
  }
  const namespace = authority.host.split(".")[1] as string;
  if (rules.forbiddenNamespaces?.includes(namespace)) {
    throw forbidden(
      `target ${hostPort} is in the system namespace ${namespace}, whose services are never targets`,
    );
  }
  const port = authority.port ?? defaultPort;
  if (rules.servicePorts !== undefined && !rules.servicePorts.includes(port)) {
    throw forbidden(
      `target ${hostPort}: port ${port} is not a service port (TARGET_PORTS: ${rules.servicePorts.join(",")})`,
    );
  }
}

/**
 * Checks a stored request's absolute URL against the rule before it is sent: the dispatcher and the
 * consumer trust no URL that reaches them, whoever wrote it. Throws BadTarget or ForbiddenTarget.
 */
export function checkTargetUrl(url: string, rules: TargetRules): void {
  const { scheme, authorityText } = splitTargetUrl(url);
  const authority = parseAuthority(authorityText);
  if (authority === undefined) {
    throw badTarget(
      `the target URL's host ${JSON.stringify(authorityText.slice(0, 100))} is not host[:port]`,
    );
  }
  checkAuthority(authority, scheme === "https" ? 443 : 80, rules);
}

function splitTargetUrl(url: string): { scheme: string; authorityText: string } {
  const match = /^(https?):\/\/([^/?#]*)/i.exec(url);
  if (match === null) throw badTarget("the target URL is not absolute http(s)");
  return { scheme: (match[1] as string).toLowerCase(), authorityText: match[2] as string };
}

/**
 * `checkTargetUrl` for one set of rules, remembering the verdict for each scheme and authority: a
 * dispatcher sends to the same few services again and again, and the verdict depends on nothing else.
 * At most `size` are remembered (it starts over when full).
 */
export function targetChecker(rules: TargetRules, size = 1000): (url: string) => void {
  const verdicts = new Map<string, AsyncError | undefined>();
  return (url) => {
    const { scheme, authorityText } = splitTargetUrl(url);
    const key = `${scheme}://${authorityText}`;
    let verdict = verdicts.get(key);
    if (verdict === undefined && !verdicts.has(key)) {
      try {
        checkTargetUrl(key, rules);
      } catch (err) {
        if (!(err instanceof AsyncError)) throw err;
        verdict = err;
      }
      if (verdicts.size >= size) verdicts.clear();
      verdicts.set(key, verdict);
    }
    if (verdict !== undefined) throw verdict;
  };
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

  checkAuthority(authority, 80, rules);
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

/** ALLOWED_TARGET_HOSTS: `host`, `host:port`, `*.suffix`, `*.suffix:port`, comma-separated. */
const hostPatternsSetting = listSetting([]).transform((entries, ctx) => {
  const patterns: HostPattern[] = [];
  for (const entry of entries) {
    try {
      patterns.push(parseHostPattern(entry));
    } catch (err) {
      ctx.addIssue({ code: "custom", message: (err as Error).message });
      return z.NEVER;
    }
  }
  return patterns;
});

const portListSetting = listSetting(DEFAULT_SERVICE_PORTS.map(String)).transform((values, ctx) => {
  const ports = values.map(Number);
  if (ports.length === 0 || !ports.every((p) => Number.isInteger(p) && p >= 1 && p <= 65535)) {
    ctx.addIssue({ code: "custom", message: "must be a comma-separated list of port numbers" });
    return z.NEVER;
  }
  return ports;
});

/**
 * The settings of the target rule, read the same way by every component that checks it (producer,
 * dispatcher, consumer): spread into a component's env schema, then `targetRulesFromEnv`.
 */
export const targetEnvFields = {
  ALLOWED_TARGET_HOSTS: hostPatternsSetting,
  TARGET_PORTS: portListSetting,
  SYSTEM_NAMESPACE: z.string().default("knative-serving"),
};

/** A Redis address as a forbidden host: its host on its port (the same host may serve apps locally). */
export function redisHostPattern(redis: { readonly host: string; readonly port: number }): HostPattern {
  const host = isIPv6(redis.host) ? `[${redis.host}]` : redis.host.toLowerCase();
  return { host, wildcard: false, port: redis.port };
}

/** The rule from those settings; `ownHosts` are the checking component's own addresses and its Redis. */
export function targetRulesFromEnv(
  e: {
    readonly ALLOWED_TARGET_HOSTS: readonly HostPattern[];
    readonly TARGET_PORTS: readonly number[];
    readonly SYSTEM_NAMESPACE: string;
  },
  ownHosts: readonly HostPattern[] = [],
): TargetRules {
  return Object.freeze({
    allowed: e.ALLOWED_TARGET_HOSTS,
    forbidden: ownHosts,
    forbiddenNamespaces: Object.freeze(["kube-system", e.SYSTEM_NAMESPACE]),
    servicePorts: e.TARGET_PORTS,
  });
}
