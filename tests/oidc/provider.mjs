// A standards-conformant OpenID provider (panva's oidc-provider, certified by the OpenID Foundation) for
// tests/oidc_provider.rs: exoproxy must discover it at {issuer}/.well-known/openid-configuration and
// get a token by client credentials (docs/TESTING.md).
//
// Environment: OIDC_ISSUER (e.g. https://idp.oidc.test), OIDC_CERT / OIDC_KEY (PEM files of the TLS
// server certificate), OIDC_CLIENT_ID / OIDC_CLIENT_SECRET (the client registered for
// client_credentials), OIDC_SCOPE (the scope it may ask for). Listens on 127.0.0.1, port 0, and prints
// `PORT <n>` on stdout once it accepts connections; exits when stdin closes (its parent died).
import { readFileSync } from 'node:fs';
import https from 'node:https';
import Provider from 'oidc-provider';

const env = (name) => {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is not set`);
    process.exit(2);
  }
  return value;
};

const scope = env('OIDC_SCOPE');
const provider = new Provider(env('OIDC_ISSUER'), {
  clients: [
    {
      client_id: env('OIDC_CLIENT_ID'),
      client_secret: env('OIDC_CLIENT_SECRET'),
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_post',
      scope,
    },
  ],
  scopes: ['openid', 'offline_access', ...scope.split(' ')],
  features: {
    clientCredentials: { enabled: true },
    devInteractions: { enabled: false },
  },
  ttl: { ClientCredentials: 600 },
  cookies: { keys: ['exoproxy-test-only-cookie-key'] },
});
provider.on('server_error', (ctx, err) => console.error('server_error', err));

const server = https.createServer(
  { cert: readFileSync(env('OIDC_CERT')), key: readFileSync(env('OIDC_KEY')) },
  provider.callback(),
);
server.listen(0, '127.0.0.1', () => {
  console.log(`PORT ${server.address().port}`);
});
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
