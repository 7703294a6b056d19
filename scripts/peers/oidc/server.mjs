// The OpenID provider the Rekey tests talk to (npm oidc-provider, a certified implementation), and
// beside it, on the same port, a stand-in for the few Microsoft Graph calls Rekey makes to roll an
// Entra application's certificate. Microsoft Graph cannot be reached from the test machines; the
// stand-in follows Graph v1.0's documented request and response shapes for `GET /applications/{id}`,
// `addKey` and `removeKey`, checks the bearer token and the proof-of-possession JWT the way Graph
// documents them, and registers the keys with the real provider, so that the token flows that prove
// a rotation worked are the provider's own.
//
// usage: node server.mjs PORT          (issuer = http://127.0.0.1:PORT)
//
// Operators log in to Rekey with the authorization code flow and PKCE (client `rekey-operators`,
// a native app whose redirect is a loopback address on any port, RFC 8252) through the
// provider's own login and consent pages (devInteractions: any login name, any password). The
// ID token carries `groups`: `alice` is in rekey-operators, `carol` in rekey-auditors, anyone else
// in staff.
//
// Test-only routes (not Graph):
//   POST /_standin/applications {"certificate": "<base64 DER>"} or {"secret": "..."} -> {"id", "appId"}
//        registers a private_key_jwt client whose key is that certificate, or a client_secret_basic
//        client with that secret (what a tenant admin does in the Azure portal when they create an
//        app registration and give it its first credential).
//
// One difference from Graph, because oidc-provider keeps one secret per client: `addPassword`
// replaces the client's secret at the provider, so the old secret stops working at once instead
// of at `removePassword`. The list of password credentials Graph returns is kept as Graph would.
import Provider from 'oidc-provider';
import { createHash, createPublicKey, generateKeyPairSync, randomBytes, randomUUID, verify, X509Certificate } from 'node:crypto';

const PORT = Number(process.argv[2] || 34080);
const ISSUER = `http://127.0.0.1:${PORT}`;
const GRAPH_SCOPE = 'https://graph.microsoft.com/.default';
const GRAPH_APP_ID = '00000003-0000-0000-c000-000000000000';
// The secret the next registration or update sets (the stand-in chooses secrets, as Graph does).
let presetSecret = null;

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingJwk = { ...privateKey.export({ format: 'jwk' }), kid: 'test-signing-1', use: 'sig', alg: 'RS256' };
const signingPublic = createPublicKey({ key: signingJwk, format: 'jwk' });

const provider = new Provider(ISSUER, {
  jwks: { keys: [signingJwk] },
  clients: [
    { client_id: 'svc-secret', client_secret: 'client-secret-1', grant_types: ['client_credentials'],
      response_types: [], redirect_uris: [], token_endpoint_auth_method: 'client_secret_basic' },
    { client_id: 'svc-secret-post', client_secret: 'client-secret-post-1', grant_types: ['client_credentials'],
      response_types: [], redirect_uris: [], token_endpoint_auth_method: 'client_secret_post' },
    { client_id: 'rekey-operators', application_type: 'native', grant_types: ['authorization_code'],
      response_types: ['code'], redirect_uris: ['http://127.0.0.1/oidc/callback'], token_endpoint_auth_method: 'none' },
  ],
  findAccount: (ctx, id) => ({
    accountId: id,
    claims: () => ({
      sub: id,
      email: `${id}@rekey.test`,
      groups: { alice: ['rekey-operators', 'staff'], carol: ['rekey-auditors'] }[id] || ['staff'],
    }),
  }),
  claims: { openid: ['sub'], email: ['email'], groups: ['groups'] },
  // Scope-granted claims in the ID token itself, where a relying party without a userinfo call
  // reads them.
  conformIdTokenClaims: false,
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    registration: {
      enabled: true,
      initialAccessToken: true,
      secretFactory: async () => presetSecret ?? randomBytes(32).toString('base64url'),
      policies: {
        'standin-secret': (ctx, properties) => {
          if (presetSecret) properties.client_secret = presetSecret;
        },
      },
    },
    registrationManagement: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'urn:rekey:test-api',
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: `api.read api.write ${GRAPH_SCOPE}`,
        accessTokenFormat: 'jwt',
        audience: 'urn:rekey:test-api',
      }),
    },
  },
});
provider.on('server_error', (ctx, err) => console.error('server_error', err));

const b64u = (b) => Buffer.from(b).toString('base64url');

function jwkOf(derBase64) {
  const der = Buffer.from(derBase64, 'base64');
  const cert = new X509Certificate(der);
  const x5t = b64u(createHash('sha1').update(der).digest());
  return {
    jwk: { ...cert.publicKey.export({ format: 'jwk' }), kid: x5t, x5t, x5c: [der.toString('base64')], use: 'sig', alg: 'RS256' },
    cert,
    thumbprint: createHash('sha1').update(der).digest('hex').toUpperCase(),
  };
}

// Graph application objects, by object id.
const apps = new Map();

function clientMetadata(app) {
  const common = { grant_types: ['client_credentials'], response_types: [], redirect_uris: [] };
  if (app.secretBased) return { ...common, token_endpoint_auth_method: 'client_secret_basic' };
  return {
    ...common,
    token_endpoint_auth_method: 'private_key_jwt', token_endpoint_auth_signing_alg: 'RS256',
    jwks: { keys: app.keys.map((k) => k.jwk) },
  };
}

let initialAccessToken;
async function iat() {
  if (!initialAccessToken) {
    initialAccessToken = await new provider.InitialAccessToken({ policies: ['standin-secret'] }).save();
  }
  return initialAccessToken;
}

// Registrations and updates take turns: each sets the secret the provider's factory hands out
// (presetSecret) for the length of one request to the registration endpoint, and two at once
// (the tests run in parallel) would hand one's secret to the other's client.
let turn = Promise.resolve();
function oneAtATime(fn) {
  const run = turn.then(fn, fn);
  turn = run.catch(() => {});
  return run;
}

function register(app, secret) {
  return oneAtATime(async () => {
    presetSecret = secret ?? null;
    try {
      const res = await fetch(`${ISSUER}/reg`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${await iat()}` },
        body: JSON.stringify(clientMetadata(app)),
      });
      const body = await res.json();
      if (!res.ok) throw new Error(`registration failed: ${JSON.stringify(body)}`);
      app.appId = body.client_id;
      app.rat = body.registration_access_token;
    } finally {
      presetSecret = null;
    }
  });
}

function updateClient(app, secret) {
  return oneAtATime(async () => {
    presetSecret = secret ?? null;
    try {
      const res = await fetch(`${ISSUER}/reg/${app.appId}`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${app.rat}` },
        body: JSON.stringify({ client_id: app.appId, ...clientMetadata(app) }),
      });
      const body = await res.json();
      if (!res.ok) throw new Error(`registration update failed: ${JSON.stringify(body)}`);
      if (body.registration_access_token) app.rat = body.registration_access_token;
    } finally {
      presetSecret = null;
    }
  });
}

const updateKeys = (app) => updateClient(app);

function passwordView(p, withSecret) {
  return {
    customKeyIdentifier: null, displayName: p.displayName, endDateTime: p.endDateTime, hint: p.hint,
    keyId: p.keyId, secretText: withSecret ? p.secretText : null, startDateTime: p.startDateTime,
  };
}

function decodeJwt(token) {
  const parts = String(token || '').split('.');
  if (parts.length !== 3) throw new Error('not a JWT');
  const header = JSON.parse(Buffer.from(parts[0], 'base64url'));
  const claims = JSON.parse(Buffer.from(parts[1], 'base64url'));
  return { header, claims, input: Buffer.from(`${parts[0]}.${parts[1]}`), sig: Buffer.from(parts[2], 'base64url') };
}

function keyView(k) {
  return {
    customKeyIdentifier: k.thumbprint, displayName: k.displayName, endDateTime: k.cert.validToDate?.toISOString?.() ?? new Date(k.cert.validTo).toISOString(),
    key: null, keyId: k.keyId, startDateTime: new Date(k.cert.validFrom).toISOString(), type: 'AsymmetricX509Cert', usage: 'Verify',
  };
}

function graphError(ctx, status, code, message) {
  ctx.status = status;
  ctx.body = { error: { code, message, innerError: { date: new Date().toISOString(), 'request-id': randomUUID() } } };
}

// Graph checks the caller's access token: here, one this provider signed, for the Graph scope,
// issued to the application itself (an application may roll its own keys without a permission).
function callerApp(ctx, app) {
  const auth = ctx.get('authorization');
  if (!auth.startsWith('Bearer ')) throw Object.assign(new Error('Access token is empty.'), { status: 401, code: 'InvalidAuthenticationToken' });
  const t = decodeJwt(auth.slice(7));
  if (t.header.alg !== 'RS256' || !verify('sha256', t.input, signingPublic, t.sig)) {
    throw Object.assign(new Error('Access token validation failure.'), { status: 401, code: 'InvalidAuthenticationToken' });
  }
  if (t.claims.exp * 1000 < Date.now()) throw Object.assign(new Error('Lifetime validation failed, the token is expired.'), { status: 401, code: 'InvalidAuthenticationToken' });
  if (!String(t.claims.scope || '').split(' ').includes(GRAPH_SCOPE)) {
    throw Object.assign(new Error('Access token is not for Microsoft Graph.'), { status: 401, code: 'InvalidAuthenticationToken' });
  }
  if (t.claims.client_id !== app.appId) {
    throw Object.assign(new Error('Insufficient privileges to complete the operation.'), { status: 403, code: 'Authorization_RequestDenied' });
  }
}

// The proof of possession: a JWT signed by one of the application's current certificates, with
// aud = Microsoft Graph's app id, iss = the application's object id, and a lifetime of at most
// ten minutes.
function checkProof(app, proof) {
  let t;
  try { t = decodeJwt(proof); } catch { throw Object.assign(new Error('The proof is not a JWT.'), { status: 400, code: 'Request_BadRequest' }); }
  const key = app.keys.find((k) => k.jwk.x5t === t.header.x5t);
  const bad = (m) => Object.assign(new Error(m), { status: 400, code: 'Request_BadRequest' });
  if (!key) throw bad('The proof is not signed by a key of this application.');
  if (t.header.alg !== 'RS256' || !verify('sha256', t.input, key.cert.publicKey, t.sig)) throw bad('The proof signature is invalid.');
  const now = Math.floor(Date.now() / 1000);
  if (t.claims.aud !== GRAPH_APP_ID) throw bad('The proof audience is invalid.');
  if (t.claims.iss !== app.id) throw bad('The proof issuer must be the application object id.');
  if (!(t.claims.nbf <= now + 60 && t.claims.exp > now && t.claims.exp - t.claims.nbf <= 600)) throw bad('The proof lifetime is invalid.');
  return key;
}

async function readJson(ctx) {
  const chunks = [];
  for await (const c of ctx.req) chunks.push(c);
  try { return JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}'); } catch { return null; }
}

provider.use(async (ctx, next) => {
  if (ctx.path === '/_standin/applications' && ctx.method === 'POST') {
    const body = await readJson(ctx);
    const app = { id: randomUUID(), keys: [], passwords: [], secretBased: typeof body?.secret === 'string' };
    try {
      if (app.secretBased) {
        app.passwords.push({ keyId: randomUUID(), displayName: 'initial', hint: body.secret.slice(0, 3),
          startDateTime: new Date().toISOString(), endDateTime: new Date(Date.now() + 365 * 86400e3).toISOString() });
        await register(app, body.secret);
      } else {
        app.keys.push({ ...jwkOf(body.certificate), keyId: randomUUID(), displayName: 'CN=initial' });
        await register(app);
      }
    } catch (e) {
      ctx.status = 400; ctx.body = { error: String(e.message || e) }; return;
    }
    apps.set(app.id, app);
    ctx.status = 201; ctx.body = { id: app.id, appId: app.appId };
    return;
  }
  const m = ctx.path.match(/^\/v1\.0\/applications\/([^/]+)(\/addKey|\/removeKey|\/addPassword|\/removePassword)?$/);
  if (!m) return next();
  const app = apps.get(m[1]);
  if (!app) return graphError(ctx, 404, 'Request_ResourceNotFound', `Resource '${m[1]}' does not exist or one of its queried reference-property objects are not present.`);
  try {
    callerApp(ctx, app);
    if (!m[2] && ctx.method === 'GET') {
      ctx.body = {
        id: app.id, appId: app.appId, keyCredentials: app.keys.map(keyView),
        passwordCredentials: app.passwords.map((p) => passwordView(p, false)),
      };
      return;
    }
    if (ctx.method !== 'POST') return graphError(ctx, 405, 'Request_BadRequest', 'Method not allowed.');
    const body = await readJson(ctx);
    if (!body) return graphError(ctx, 400, 'Request_BadRequest', 'Invalid JSON.');
    if (m[2] === '/addPassword') {
      // Graph: the caller needs Application.ReadWrite.OwnedBy on an application it owns; here an
      // application may manage its own passwords. No proof: addPassword takes none.
      const pc = body.passwordCredential || {};
      const secretText = `${randomBytes(3).toString('base64url').slice(0, 3)}8Q~${randomBytes(28).toString('base64url')}`;
      const added = {
        keyId: randomUUID(), displayName: pc.displayName || null, hint: secretText.slice(0, 3), secretText,
        startDateTime: new Date().toISOString(), endDateTime: pc.endDateTime || new Date(Date.now() + 730 * 86400e3).toISOString(),
      };
      app.secretBased = true;
      app.passwords.push(added);
      await updateClient(app, secretText);
      ctx.body = passwordView(added, true);
      delete added.secretText;
      return;
    }
    if (m[2] === '/removePassword') {
      const i = app.passwords.findIndex((p) => p.keyId === body.keyId);
      if (i < 0) return graphError(ctx, 404, 'Request_ResourceNotFound', 'No password credential with this keyId.');
      app.passwords.splice(i, 1);
      ctx.status = 204;
      return;
    }
    checkProof(app, body.proof);
    if (m[2] === '/addKey') {
      const kc = body.keyCredential || {};
      if (kc.type !== 'AsymmetricX509Cert' || kc.usage !== 'Verify' || !kc.key) {
        return graphError(ctx, 400, 'Request_BadRequest', 'keyCredential must be an AsymmetricX509Cert for Verify with a key.');
      }
      let added;
      try { added = { ...jwkOf(kc.key), keyId: randomUUID(), displayName: kc.displayName || 'CN=added' }; } catch {
        return graphError(ctx, 400, 'Request_BadRequest', 'The key is not a certificate.');
      }
      if (app.keys.some((k) => k.thumbprint === added.thumbprint)) {
        return graphError(ctx, 400, 'Request_BadRequest', 'The key already exists on this application.');
      }
      app.keys.push(added);
      await updateKeys(app);
      ctx.body = keyView(added);
      return;
    }
    const i = app.keys.findIndex((k) => k.keyId === body.keyId);
    if (i < 0) return graphError(ctx, 404, 'Request_ResourceNotFound', 'No key with this keyId.');
    app.keys.splice(i, 1);
    await updateKeys(app);
    ctx.status = 204;
  } catch (e) {
    graphError(ctx, e.status || 500, e.code || 'InternalServerError', String(e.message || e));
  }
});

provider.listen(PORT, '127.0.0.1', () => console.log(`oidc-provider and Graph stand-in on ${ISSUER}`));
