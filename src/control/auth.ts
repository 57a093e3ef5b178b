// Bearer tokens for the external policy API, as the policy server checks
// them (cf-networking-release: src/code.cloudfoundry.org/policy-server/
// handlers/auth_middleware.go): no Authorization header → 401 "missing
// authorization header"; a token that does not verify → 401 "failed to verify
// token with uaa"; a token without an allowed scope → 403 "provided scopes
// [...] do not include allowed scopes [...]". Both 401s carry
// `WWW-Authenticate: Bearer`, as cf-networking-helpers' httperror does.
//
// The policy server asks UAA's /check_token; silkworm verifies the JWT itself
// against UAA's signing key (a PEM public key or certificate, or a JWKS file
// such as UAA's /token_keys), RS256 only, with `exp` required and checked.
// jose does the JOSE work: no hand-written signature or key parsing here.
import fs from 'node:fs';
import crypto from 'node:crypto';
import { SignJWT, createLocalJWKSet, errors as joseErrors, jwtVerify, type JWTPayload, type JSONWebKeySet } from 'jose';

/** What a request needs: `admin` to change policies, `read` to list them. */
export type Need = 'admin' | 'read';

/** network.admin for changes; network.admin or network.write for reads (main.go's authAdminWrap/authWriteWrap). */
export const SCOPES: Record<Need, readonly string[]> = {
  admin: ['network.admin'],
  read: ['network.admin', 'network.write'],
};

export type AuthResult =
  | { ok: true; subject: string | undefined; scopes: string[] }
  | {
      ok: false;
      status: 401 | 403;
      /** The policy server's error text (the HTTP body is {"error": text}). */
      error: string;
      /** Why, in one sentence, for the log and for tools: expired, bad signature, wrong scope… */
      reason: string;
    };

type Key = crypto.KeyObject | ReturnType<typeof createLocalJWKSet>;

/** A key file that cannot be used; the message names the file and says why. */
export class TokenKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TokenKeyError';
  }
}

export class TokenVerifier {
  private constructor(
    private readonly key: Key,
    /** Seconds of clock skew allowed on exp/nbf. */
    private readonly toleranceS: number,
  ) {}

  /** Read a PEM public key, a PEM certificate, or a JWKS (`{"keys":[…]}`) / single JWK JSON file. */
  static fromFile(file: string, opts: { clockToleranceS?: number } = {}): TokenVerifier {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (e) {
      throw new TokenKeyError(`cannot read the token key ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    return TokenVerifier.fromText(text, file, opts);
  }

  static fromText(text: string, name = 'the token key', opts: { clockToleranceS?: number } = {}): TokenVerifier {
    const tolerance = opts.clockToleranceS ?? 0;
    const trimmed = text.trim();
    if (trimmed.startsWith('{')) {
      let json: unknown;
      try {
        json = JSON.parse(trimmed);
      } catch (e) {
        throw new TokenKeyError(`${name} is neither PEM nor valid JSON: ${(e as Error).message}`);
      }
      const set = (Array.isArray((json as JSONWebKeySet).keys) ? json : { keys: [json] }) as JSONWebKeySet;
      const rsa = set.keys.filter((k) => k.kty === 'RSA');
      if (rsa.length === 0) throw new TokenKeyError(`${name} holds no RSA key (kty "RSA"); tokens are verified with RS256`);
      return new TokenVerifier(createLocalJWKSet({ keys: rsa }), tolerance);
    }
    if (!trimmed.includes('-----BEGIN ')) throw new TokenKeyError(`${name} is neither a PEM public key nor a JWKS JSON file`);
    if (/-----BEGIN (RSA |EC |ENCRYPTED )?PRIVATE KEY-----/.test(trimmed)) {
      throw new TokenKeyError(`${name} is a private key; give the controller the public key (token-key.pub.pem), keep the private one for signing`);
    }
    let key: crypto.KeyObject;
    try {
      key = trimmed.includes('-----BEGIN CERTIFICATE-----')
        ? new crypto.X509Certificate(trimmed).publicKey
        : crypto.createPublicKey(trimmed);
    } catch (e) {
      throw new TokenKeyError(`${name} is not a readable PEM public key or certificate: ${(e as Error).message}`);
    }
    if (key.asymmetricKeyType !== 'rsa') {
      throw new TokenKeyError(`${name} is a ${key.asymmetricKeyType ?? 'non-RSA'} key; tokens are verified with RS256, which needs an RSA key`);
    }
    return new TokenVerifier(key, tolerance);
  }

  /** Check the value of an Authorization header for `need`. Never throws. */
  async check(authorization: string | string[] | undefined, need: Need): Promise<AuthResult> {
    const header = Array.isArray(authorization) ? authorization[0] : authorization;
    if (header === undefined) {
      return { ok: false, status: 401, error: 'missing authorization header', reason: 'the request has no Authorization header' };
    }
    // As the policy server: strip "Bearer " or "bearer " and use the rest.
    let token = header.startsWith('Bearer ') ? header.slice(7) : header.startsWith('bearer ') ? header.slice(7) : header;
    token = token.trim();
    let payload: JWTPayload;
    try {
      const r = await jwtVerify(token, this.key as Parameters<typeof jwtVerify>[1], {
        algorithms: ['RS256'],
        requiredClaims: ['exp'],
        clockTolerance: this.toleranceS,
      });
      payload = r.payload;
    } catch (e) {
      return { ok: false, status: 401, error: 'failed to verify token with uaa', reason: explain(e) };
    }
    const scopes = scopeList(payload.scope);
    const allowed = SCOPES[need];
    if (!scopes.some((s) => allowed.includes(s))) {
      const text = `provided scopes [${scopes.join(' ')}] do not include allowed scopes [${allowed.join(' ')}]`;
      return { ok: false, status: 403, error: text, reason: text };
    }
    return { ok: true, subject: typeof payload.sub === 'string' ? payload.sub : undefined, scopes };
  }
}

/** UAA puts scopes in `scope` as an array; RFC 8693 uses a space-separated string. Accept both. */
function scopeList(v: unknown): string[] {
  if (Array.isArray(v)) return v.filter((s): s is string => typeof s === 'string');
  if (typeof v === 'string') return v.split(' ').filter((s) => s.length > 0);
  return [];
}

/** One sentence for a token that did not verify. */
export function explain(e: unknown): string {
  if (e instanceof joseErrors.JWTExpired) {
    const exp = (e.payload as JWTPayload).exp;
    return `the token expired${typeof exp === 'number' ? ' at ' + new Date(exp * 1000).toISOString() : ''}`;
  }
  if (e instanceof joseErrors.JWTClaimValidationFailed) {
    if (e.claim === 'exp') return 'the token has no exp (expiry) claim';
    if (e.claim === 'nbf') return 'the token is not valid yet (nbf is in the future)';
    return `the token's ${e.claim} claim is not valid: ${e.reason}`;
  }
  if (e instanceof joseErrors.JOSEAlgNotAllowed) return 'the token is not signed with RS256';
  if (e instanceof joseErrors.JWSSignatureVerificationFailed) return 'the token signature does not match the token key';
  if (e instanceof joseErrors.JWKSNoMatchingKey) return 'no key in the token key set matches the token (kid/alg)';
  if (e instanceof joseErrors.JWSInvalid || e instanceof joseErrors.JWTInvalid) return `the token is malformed: ${e.message}`;
  return `the token could not be verified: ${e instanceof Error ? e.message : String(e)}`;
}

export interface SignOptions {
  /** PEM text of the RSA private key (PKCS#8 or PKCS#1), e.g. token-key.pem from `silkworm certs create`. */
  signingKeyPem: string;
  scopes: string[];
  /** Lifetime in seconds (exp = now + this). */
  expiresInS: number;
  subject?: string;
  /** Key id placed in the header, to pick the key out of a JWKS. */
  kid?: string;
  /** Clock in epoch ms (tests). */
  now?: number;
}

/** An RS256 JWT with UAA's claim shapes (`scope` an array, `sub`, `client_id`, `iat`, `exp`, `jti`). */
export async function signToken(o: SignOptions): Promise<string> {
  let key: crypto.KeyObject;
  try {
    key = crypto.createPrivateKey(o.signingKeyPem);
  } catch (e) {
    throw new TokenKeyError(`the signing key is not a readable PEM private key: ${(e as Error).message}`);
  }
  if (key.asymmetricKeyType !== 'rsa') throw new TokenKeyError(`the signing key is ${key.asymmetricKeyType ?? 'not RSA'}; RS256 needs an RSA key`);
  const iat = Math.floor((o.now ?? Date.now()) / 1000);
  const header: { alg: 'RS256'; typ: 'JWT'; kid?: string } = { alg: 'RS256', typ: 'JWT' };
  if (o.kid) header.kid = o.kid;
  return new SignJWT({ scope: o.scopes, client_id: 'silkworm' })
    .setProtectedHeader(header)
    .setSubject(o.subject ?? 'silkworm')
    .setIssuedAt(iat)
    .setExpirationTime(iat + o.expiresInS)
    .setJti(crypto.randomUUID())
    .sign(key);
}

/** "90s", "15m", "1h", "7d", "168h" or plain seconds → seconds; undefined if not a duration. */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(s|m|h|d)?$/.exec(text.trim());
  if (!m) return undefined;
  const n = Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[(m[2] ?? 's') as 's' | 'm' | 'h' | 'd'];
  return n > 0 && Number.isFinite(n) ? n : undefined;
}
