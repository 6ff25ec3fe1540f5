/**
 * A stand-in for a cluster's OIDC issuer: discovery document and JWKS on a loopback HTTP server, and
 * tokens signed with its key, shaped like projected service account tokens.
 */
import { generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import { createServer, type Server } from "node:http";
import { listen } from "../../src/lib/http.js";

export interface TestIssuer {
  readonly issuer: string;
  /** How many times the keys were fetched. */
  jwksHits(): number;
  token(
    claims: Record<string, unknown>,
    options?: { alg?: "RS256" | "ES256"; kid?: string; key?: KeyObject },
  ): string;
  close(): Promise<void>;
}

export async function startTestIssuer(): Promise<TestIssuer> {
  const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
  let hits = 0;
  let issuer = "";
  const server: Server = createServer((req, res) => {
    res.setHeader("content-type", "application/json");
    if (req.url === "/.well-known/openid-configuration") {
      res.end(JSON.stringify({ issuer, jwks_uri: `${issuer}/openid/v1/jwks` }));
    } else if (req.url === "/openid/v1/jwks") {
      hits++;
      res.end(
        JSON.stringify({
          keys: [
            { ...rsa.publicKey.export({ format: "jwk" }), kid: "rsa-1", use: "sig", alg: "RS256" },
            { ...ec.publicKey.export({ format: "jwk" }), kid: "ec-1", use: "sig", alg: "ES256" },
          ],
        }),
      );
    } else {
      res.statusCode = 404;
      res.end("{}");
    }
  });
  const port = await listen(server, 0, "127.0.0.1");
  issuer = `http://127.0.0.1:${port}`;
  return {
    issuer,
    jwksHits: () => hits,
    token(claims, options = {}) {
      const alg = options.alg ?? "RS256";
      const kid = options.kid ?? (alg === "ES256" ? "ec-1" : "rsa-1");
      const header = Buffer.from(JSON.stringify({ alg, kid, typ: "JWT" })).toString("base64url");
      const payload = Buffer.from(JSON.stringify(claims)).toString("base64url");
      const signed = Buffer.from(`${header}.${payload}`);
      const key = options.key ?? (alg === "ES256" ? ec.privateKey : rsa.privateKey);
      const signature =
        alg === "ES256"
          ? sign("sha256", signed, { key, dsaEncoding: "ieee-p1363" })
          : sign("sha256", signed, key);
      return `${header}.${payload}.${signature.toString("base64url")}`;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
