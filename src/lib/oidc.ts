/**
 * OIDC sender authentication, as Knative Eventing does it where the cluster has it: the sender presents a
 * JSON Web Token issued by the cluster for the receiver's audience (`Authorization: Bearer <jwt>`), and
 * the receiver checks it against the issuer's published keys (JWKS). For the dispatcher that token is a
 * projected service account token, a file the kubelet keeps fresh (`OIDC_TOKEN_FILE`); the consumer
 * accepts it when it was issued by `OIDC_ISSUER`, for `OIDC_AUDIENCE`, to one of `OIDC_SUBJECTS`.
 *
 * Only what such tokens use is implemented: compact JWS, RS256 / ES256 / PS256 keys from the JWKS, the
 * `iss`, `aud`, `sub`, `exp`, `nbf` claims. Anything else is refused.
 */
import {
  constants,
  createPublicKey,
  type JsonWebKey,
  type KeyObject,
  verify as verifySignature,
} from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import { request } from "undici";

export interface OidcSettings {
  readonly issuer: string;
  /** Where the keys are; by default from the issuer's `/.well-known/openid-configuration`. */
  readonly jwksUrl?: string;
  readonly audience: string;
  /** Accepted `sub` claims, e.g. `system:serviceaccount:knative-serving:async-dispatcher`. */
  readonly subjects: readonly string[];
}

/** Clock difference tolerated on exp/nbf. */
const LEEWAY_S = 60;
/** Keys are fetched again at most this often when a token names an unknown key (a rotation). */
const REFETCH_MIN_MS = 30_000;
/** And at least this often anyway. */
const KEYS_MAX_AGE_MS = 3_600_000;

const ALGORITHMS: Record<string, { hash: string; pss?: boolean; ec?: boolean }> = {
  RS256: { hash: "sha256" },
  PS256: { hash: "sha256", pss: true },
  ES256: { hash: "sha256", ec: true },
};

export type OidcVerdict =
  | { readonly ok: true; readonly subject: string }
  | { readonly ok: false; readonly reason: string };

export class OidcVerifier {
  #keys = new Map<string, KeyObject>();
  #fetchedAt = 0;
  #fetching: Promise<void> | undefined;

  constructor(
    private readonly settings: OidcSettings,
    private readonly now: () => number = Date.now,
  ) {}

  /** Checks `Authorization: Bearer <jwt>`. Never throws: a refusal says why. */
  async verify(authorization: string | undefined): Promise<OidcVerdict> {
    const token = /^Bearer\s+([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)\s*$/i.exec(
      authorization ?? "",
    )?.[1];
    if (token === undefined) return { ok: false, reason: "no OIDC bearer token" };
    const [headerB64, payloadB64, signatureB64] = token.split(".") as [string, string, string];
    let header: { alg?: unknown; kid?: unknown };
    let claims: Record<string, unknown>;
    try {
      header = JSON.parse(Buffer.from(headerB64, "base64url").toString("utf8"));
      claims = JSON.parse(Buffer.from(payloadB64, "base64url").toString("utf8"));
    } catch {
      return { ok: false, reason: "the token is not a JWT" };
    }
    const algorithm = typeof header.alg === "string" ? ALGORITHMS[header.alg] : undefined;
    if (algorithm === undefined)
      return { ok: false, reason: `token algorithm ${String(header.alg)} is not accepted` };
    const key = await this.#key(typeof header.kid === "string" ? header.kid : "");
    if (key === undefined) return { ok: false, reason: "the token's key is not among the issuer's keys" };
    const signed = Buffer.from(`${headerB64}.${payloadB64}`);
    const signature = Buffer.from(signatureB64, "base64url");
    let valid = false;
    try {
      valid = verifySignature(
        algorithm.hash,
        signed,
        {
          key,
          ...(algorithm.pss ? { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 } : {}),
          ...(algorithm.ec ? { dsaEncoding: "ieee-p1363" as const } : {}),
        },
        signature,
      );
    } catch {
      valid = false;
    }
    if (!valid) return { ok: false, reason: "the token's signature is not valid" };
    return this.#checkClaims(claims);
  }

  #checkClaims(claims: Record<string, unknown>): OidcVerdict {
    const nowS = this.now() / 1000;
    if (claims.iss !== this.settings.issuer)
      return { ok: false, reason: "the token was issued by another issuer" };
    const audiences = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
    if (!audiences.includes(this.settings.audience))
      return { ok: false, reason: "the token is for another audience" };
    if (typeof claims.exp !== "number" || claims.exp + LEEWAY_S < nowS)
      return { ok: false, reason: "the token has expired" };
    if (typeof claims.nbf === "number" && claims.nbf - LEEWAY_S > nowS)
      return { ok: false, reason: "the token is not valid yet" };
    const subject = claims.sub;
    if (typeof subject !== "string" || !this.settings.subjects.includes(subject)) {
      return {
        ok: false,
        reason: `the token's subject ${JSON.stringify(subject)} is not an accepted sender`,
      };
    }
    return { ok: true, subject };
  }

  async #key(kid: string): Promise<KeyObject | undefined> {
    const age = this.now() - this.#fetchedAt;
    const known =
      this.#keys.get(kid) ?? (kid === "" && this.#keys.size === 1 ? [...this.#keys.values()][0] : undefined);
    if (known !== undefined && age < KEYS_MAX_AGE_MS) return known;
    if (age >= REFETCH_MIN_MS || this.#fetchedAt === 0) {
      this.#fetching ??= this.#fetchKeys().finally(() => {
        this.#fetching = undefined;
      });
      await this.#fetching.catch(() => undefined);
    }
    return (
      this.#keys.get(kid) ?? (kid === "" && this.#keys.size === 1 ? [...this.#keys.values()][0] : undefined)
    );
  }

  async #fetchKeys(): Promise<void> {
    this.#fetchedAt = this.now();
    const jwksUrl = this.settings.jwksUrl ?? (await this.#discover());
    const document = (await getJson(jwksUrl)) as { keys?: (JsonWebKey & { kid?: string; use?: string })[] };
    const keys = new Map<string, KeyObject>();
    for (const jwk of document.keys ?? []) {
      if (jwk.use !== undefined && jwk.use !== "sig") continue;
      try {
        keys.set(jwk.kid ?? "", createPublicKey({ key: jwk, format: "jwk" }));
      } catch {
        // A key of a type we do not use: skipped.
      }
    }
    this.#keys = keys;
  }

  async #discover(): Promise<string> {
    const config = (await getJson(
      `${this.settings.issuer.replace(/\/$/, "")}/.well-known/openid-configuration`,
    )) as {
      jwks_uri?: unknown;
    };
    if (typeof config.jwks_uri !== "string") throw new Error("the issuer's configuration names no jwks_uri");
    return config.jwks_uri;
  }
}

async function getJson(url: string): Promise<unknown> {
  const res = await request(url, { headersTimeout: 5000, bodyTimeout: 5000 });
  if (res.statusCode !== 200) {
    await res.body.dump();
    throw new Error(`${url} answered ${res.statusCode}`);
  }
  return res.body.json();
}

/**
 * The dispatcher's side: the token in a file the kubelet refreshes (a projected service account token),
 * read again when the file changes, looked at no more than once a second.
 */
export class TokenFile {
  #token = "";
  #mtimeMs = -1;
  #checkedAt = 0;

  constructor(private readonly path: string) {}

  async token(): Promise<string> {
    const now = Date.now();
    if (now - this.#checkedAt >= 1000 || this.#token === "") {
      this.#checkedAt = now;
      const info = await stat(this.path);
      if (info.mtimeMs !== this.#mtimeMs) {
        this.#token = (await readFile(this.path, "utf8")).trim();
        this.#mtimeMs = info.mtimeMs;
      }
    }
    return this.#token;
  }
}
