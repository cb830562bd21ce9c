// Drives a running identity server with oauth4webapi, a strict third-party OAuth 2.0 /
// OpenID Connect client library, and prints what the library accepted as JSON.
//
//   node oauth4webapi.mjs SCENARIO
//
// RP_CONFIG (environment) is a JSON object: {issuer, user: {email, password},
// clients: {NAME: {client_id, client_secret?, auth_method, redirect_uri?,
// post_logout_redirect_uri?, id_token_alg?, private_jwk?}}}. Scenarios: discovery, code,
// refresh, introspection, revocation, client_credentials, private_key_jwt, device, par,
// logout.
//
// The last line of stdout is the result ({"ok": true, ...} or {"ok": false, "error": ...});
// earlier lines are events the test reacts to (the device flow prints its user_code, then
// each refused poll, and keeps polling while the test approves it). Every protocol check is the library's own:
// the only option relaxed is allowInsecureRequests, because the test server listens on
// plain http on the loopback interface.
//
// The "browser" (sign-in page, consent page, redirects) is plain fetch with a cookie jar:
// it follows the server's redirects and stops at the redirect URI without fetching it.

import * as oauth from 'oauth4webapi'

const config = JSON.parse(process.env.RP_CONFIG ?? '{}')
const issuer = new URL(config.issuer)
const http = { [oauth.allowInsecureRequests]: true }

// private_key_jwt clients sign their assertions with their own key (a private JWK).
const privateKeys = {}
for (const [name, registered] of Object.entries(config.clients ?? {})) {
  if (registered.private_jwk) {
    const { kid, ...jwk } = registered.private_jwk
    const key = await crypto.subtle.importKey(
      'jwk',
      jwk,
      { name: 'ECDSA', namedCurve: 'P-256' },
      false,
      ['sign'],
    )
    privateKeys[name] = { key, kid }
  }
}

function emit(value) {
  process.stdout.write(JSON.stringify(value) + '\n')
}

function clientOf(name) {
  const registered = config.clients[name]
  if (!registered) throw new Error(`no client "${name}" in RP_CONFIG`)
  const client = { client_id: registered.client_id }
  if (registered.id_token_alg) {
    // The client's registered id_token_signed_response_alg: the library refuses any other.
    client.id_token_signed_response_alg = registered.id_token_alg
  }
  let auth
  switch (registered.auth_method) {
    case 'client_secret_basic':
      auth = oauth.ClientSecretBasic(registered.client_secret)
      break
    case 'client_secret_post':
      auth = oauth.ClientSecretPost(registered.client_secret)
      break
    case 'none':
      auth = oauth.None()
      break
    case 'private_key_jwt':
      auth = oauth.PrivateKeyJwt(privateKeys[name])
      break
    default:
      throw new Error(`unsupported auth method ${registered.auth_method}`)
  }
  return { client, auth, registered }
}

async function discover() {
  const response = await oauth.discoveryRequest(issuer, { algorithm: 'oidc', ...http })
  return oauth.processDiscoveryResponse(issuer, response)
}

// Browser -------------------------------------------------------------------------------

function unescapeHtml(value) {
  return value
    .replace(/&#34;|&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&')
}

function hiddenField(html, name) {
  const match = html.match(new RegExp(`name="${name}" type="hidden" value="([^"]*)"`))
  if (!match) throw new Error(`no hidden field ${name} in page:\n${html.slice(0, 2000)}`)
  return unescapeHtml(match[1])
}

class Browser {
  constructor() {
    this.cookies = new Map()
  }

  async request(url, { method = 'GET', form } = {}) {
    const headers = {}
    if (this.cookies.size) {
      headers.cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ')
    }
    let body
    if (form) {
      body = new URLSearchParams(form)
      headers['content-type'] = 'application/x-www-form-urlencoded'
    }
    const response = await fetch(url, { method, headers, body, redirect: 'manual' })
    for (const cookie of response.headers.getSetCookie()) {
      const [pair, ...attributes] = cookie.split(';')
      const index = pair.indexOf('=')
      const name = pair.slice(0, index).trim()
      const value = pair.slice(index + 1).trim()
      const expired = attributes.some((a) => {
        const [key, val] = a.trim().split('=')
        if (key.toLowerCase() === 'max-age') return Number(val) <= 0
        if (key.toLowerCase() === 'expires') return new Date(val).getTime() <= Date.now()
        return false
      })
      if (expired) this.cookies.delete(name)
      else this.cookies.set(name, value)
    }
    return response
  }

  // Walks the authorization endpoint like a user: signs in and allows consent when asked,
  // follows redirects on the server, and returns the URL the server finally sends the
  // browser to outside the issuer (the client's redirect URI), without requesting it.
  async authorize(startUrl) {
    let response = await this.request(startUrl)
    let url = new URL(startUrl)
    for (let step = 0; step < 12; step++) {
      if ([301, 302, 303, 307, 308].includes(response.status)) {
        const location = new URL(response.headers.get('location'), url)
        if (location.origin !== issuer.origin) return location
        url = location
        response = await this.request(url)
        continue
      }
      const html = await response.text()
      if (response.status === 200 && html.includes('action="/sign-in"')) {
        response = await this.request(new URL('/sign-in', issuer), {
          method: 'POST',
          form: {
            csrf_token: hiddenField(html, 'csrf_token'),
            next: hiddenField(html, 'next'),
            email: config.user.email,
            password: config.user.password,
          },
        })
        url = new URL('/sign-in', issuer)
        continue
      }
      if (response.status === 200 && html.includes('action="/authorize/consent"')) {
        response = await this.request(new URL('/authorize/consent', issuer), {
          method: 'POST',
          form: {
            csrf_token: hiddenField(html, 'csrf_token'),
            request_id: hiddenField(html, 'request_id'),
            decision: 'allow',
          },
        })
        url = new URL('/authorize/consent', issuer)
        continue
      }
      throw new Error(`unexpected page ${response.status} at ${url}:\n${html.slice(0, 2000)}`)
    }
    throw new Error('too many steps at the authorization endpoint')
  }
}

// Flows ---------------------------------------------------------------------------------

// The authorization code flow with PKCE, state and nonce, as the library builds and checks
// it: callback (state, iss per RFC 9207, error), token response (ID token claims, alg,
// nonce), then the ID token signature against the keys at jwks_uri.
async function codeFlow(as, name, browser, { extra = {}, par = false } = {}) {
  const { client, auth, registered } = clientOf(name)
  const codeVerifier = oauth.generateRandomCodeVerifier()
  const state = oauth.generateRandomState()
  const nonce = oauth.generateRandomNonce()
  const params = {
    client_id: client.client_id,
    redirect_uri: registered.redirect_uri,
    response_type: 'code',
    scope: 'openid profile email',
    code_challenge: await oauth.calculatePKCECodeChallenge(codeVerifier),
    code_challenge_method: 'S256',
    state,
    nonce,
    ...extra,
  }
  const authorizationUrl = new URL(as.authorization_endpoint)
  let pushed
  if (par) {
    const response = await oauth.pushedAuthorizationRequest(as, client, auth, params, http)
    pushed = await oauth.processPushedAuthorizationResponse(as, client, response)
    authorizationUrl.searchParams.set('client_id', client.client_id)
    authorizationUrl.searchParams.set('request_uri', pushed.request_uri)
  } else {
    for (const [key, value] of Object.entries(params)) {
      authorizationUrl.searchParams.set(key, value)
    }
  }
  const callback = await browser.authorize(authorizationUrl)
  const callbackParams = oauth.validateAuthResponse(as, client, callback, state)
  const tokenResponse = await oauth.authorizationCodeGrantRequest(
    as,
    client,
    auth,
    callbackParams,
    registered.redirect_uri,
    codeVerifier,
    http,
  )
  const tokens = await oauth.processAuthorizationCodeResponse(as, client, tokenResponse, {
    expectedNonce: nonce,
    requireIdToken: true,
    // With max_age the library requires auth_time and checks it against the request.
    ...(extra.max_age ? { maxAge: Number(extra.max_age) } : {}),
  })
  await oauth.validateApplicationLevelSignature(as, tokenResponse, http)
  const claims = oauth.getValidatedIdTokenClaims(tokens)
  return {
    tokens,
    claims,
    idTokenHeader: jwtHeader(tokens.id_token),
    callback: Object.fromEntries(callback.searchParams),
    pushed,
  }
}

function jwtHeader(jwt) {
  return JSON.parse(Buffer.from(jwt.split('.')[0], 'base64url').toString())
}

async function userinfo(as, name, accessToken, sub) {
  const { client } = clientOf(name)
  const response = await oauth.userInfoRequest(as, client, accessToken, http)
  return oauth.processUserInfoResponse(as, client, sub, response)
}

async function refresh(as, name, refreshToken) {
  const { client, auth } = clientOf(name)
  const response = await oauth.refreshTokenGrantRequest(as, client, auth, refreshToken, http)
  return oauth.processRefreshTokenResponse(as, client, response)
}

async function introspect(as, name, token, hint) {
  const { client, auth } = clientOf(name)
  const response = await oauth.introspectionRequest(as, client, auth, token, {
    ...http,
    additionalParameters: hint ? { token_type_hint: hint } : {},
  })
  return oauth.processIntrospectionResponse(as, client, response)
}

async function revoke(as, name, token, hint) {
  const { client, auth } = clientOf(name)
  const response = await oauth.revocationRequest(as, client, auth, token, {
    ...http,
    additionalParameters: hint ? { token_type_hint: hint } : {},
  })
  return oauth.processRevocationResponse(response)
}

// The OAuth error code the library raised (from a JSON error body, an authorization
// response or a WWW-Authenticate challenge); anything else is rethrown.
async function oauthError(promise) {
  try {
    await promise
  } catch (error) {
    if (error instanceof oauth.ResponseBodyError || error instanceof oauth.AuthorizationResponseError) {
      return error.error
    }
    if (error instanceof oauth.WWWAuthenticateChallengeError) {
      return error.cause[0]?.parameters?.error ?? error.cause[0]?.scheme
    }
    throw error
  }
  return null
}

const sleep = (seconds) => new Promise((resolve) => setTimeout(resolve, seconds * 1000))

// Scenarios -----------------------------------------------------------------------------

const scenarios = {
  async discovery() {
    const as = await discover()
    return { metadata: as }
  },

  async code() {
    const as = await discover()
    const name = process.argv[3] ?? 'web'
    const flow = await codeFlow(as, name, new Browser(), { extra: { max_age: '300' } })
    const info = await userinfo(as, name, flow.tokens.access_token, flow.claims.sub)
    return {
      callback: flow.callback,
      id_token_header: flow.idTokenHeader,
      claims: flow.claims,
      userinfo: info,
      token_type: flow.tokens.token_type,
      scope: flow.tokens.scope,
      has_refresh_token: typeof flow.tokens.refresh_token === 'string',
    }
  },

  async refresh() {
    const as = await discover()
    const name = process.argv[3] ?? 'web'
    const { client, auth } = clientOf(name)
    const flow = await codeFlow(as, name, new Browser())
    const first = flow.tokens.refresh_token
    const refreshResponse = await oauth.refreshTokenGrantRequest(
      as,
      client,
      auth,
      first,
      http,
    )
    const refreshed = await oauth.processRefreshTokenResponse(as, client, refreshResponse)
    await oauth.validateApplicationLevelSignature(as, refreshResponse, http)
    const claims = oauth.getValidatedIdTokenClaims(refreshed)
    const info = await userinfo(as, name, refreshed.access_token, flow.claims.sub)
    const replay = await oauthError(refresh(as, name, first))
    // The new refresh token was issued before the replay; the replay ends the family.
    const afterReplay = await oauthError(refresh(as, name, refreshed.refresh_token))
    return {
      rotated: typeof refreshed.refresh_token === 'string' && refreshed.refresh_token !== first,
      new_access_token: refreshed.access_token !== flow.tokens.access_token,
      id_token_sub: claims?.sub,
      original_sub: flow.claims.sub,
      id_token_auth_time: claims?.auth_time,
      original_auth_time: flow.claims.auth_time,
      userinfo_sub: info.sub,
      replay_error: replay,
      successor_after_replay_error: afterReplay,
    }
  },

  async introspection() {
    const as = await discover()
    const flow = await codeFlow(as, 'web', new Browser())
    const access = await introspect(as, 'rs', flow.tokens.access_token, 'access_token')
    const refreshToken = await introspect(as, 'rs', flow.tokens.refresh_token, 'refresh_token')
    const garbage = await introspect(as, 'rs', 'not-a-token', undefined)
    return {
      sub: flow.claims.sub,
      client_id: clientOf('web').client.client_id,
      access,
      refresh: refreshToken,
      garbage,
    }
  },

  async revocation() {
    const as = await discover()
    const flow = await codeFlow(as, 'web', new Browser())
    // Access token first: only it stops working.
    await revoke(as, 'web', flow.tokens.access_token, 'access_token')
    const accessAfter = await introspect(as, 'rs', flow.tokens.access_token, 'access_token')
    const userinfoAfter = await oauthError(
      userinfo(as, 'web', flow.tokens.access_token, flow.claims.sub),
    )
    // Then the refresh token: the grant ends.
    await revoke(as, 'web', flow.tokens.refresh_token, 'refresh_token')
    const refreshAfter = await introspect(as, 'rs', flow.tokens.refresh_token, 'refresh_token')
    const refreshError = await oauthError(refresh(as, 'web', flow.tokens.refresh_token))
    // RFC 7009 2.2: revoking an unknown token is still a success.
    await revoke(as, 'web', 'unknown-token', undefined)
    return {
      access_active_after: accessAfter.active,
      userinfo_after: userinfoAfter,
      refresh_active_after: refreshAfter.active,
      refresh_error: refreshError,
    }
  },

  async client_credentials() {
    const as = await discover()
    const { client, auth } = clientOf('rs')
    const response = await oauth.clientCredentialsGrantRequest(
      as,
      client,
      auth,
      { scope: 'roles' },
      http,
    )
    const tokens = await oauth.processClientCredentialsResponse(as, client, response)
    // RFC 9068 as a resource server checks it: typ at+jwt, iss, aud, exp, signature.
    const request = new Request('http://127.0.0.1/api', {
      headers: { authorization: `Bearer ${tokens.access_token}` },
    })
    const accessClaims = await oauth.validateJwtAccessToken(as, request, client.client_id, http)
    const introspection = await introspect(as, 'rs', tokens.access_token, 'access_token')
    return { tokens, access_claims: accessClaims, introspection }
  },

  async private_key_jwt() {
    const as = await discover()
    const { client, auth } = clientOf('jwt')
    const response = await oauth.clientCredentialsGrantRequest(
      as,
      client,
      auth,
      { scope: 'roles' },
      http,
    )
    const tokens = await oauth.processClientCredentialsResponse(as, client, response)
    // The same key authenticates the client at the introspection endpoint (own token).
    const introspection = await introspect(as, 'jwt', tokens.access_token, 'access_token')
    // Each assertion is new (fresh jti), so a second request is not taken for a replay.
    const again = await oauth.processClientCredentialsResponse(
      as,
      client,
      await oauth.clientCredentialsGrantRequest(as, client, auth, { scope: 'roles' }, http),
    )
    return { tokens, introspection, second_token: again.access_token !== tokens.access_token }
  },

  async device() {
    const as = await discover()
    const name = 'device'
    const { client, auth } = clientOf(name)
    const response = await oauth.deviceAuthorizationRequest(
      as,
      client,
      auth,
      { scope: 'openid profile email' },
      http,
    )
    const authorization = await oauth.processDeviceAuthorizationResponse(as, client, response)
    emit({ event: 'device_authorization', ...authorization })
    let interval = authorization.interval ?? 5
    const seen = []
    const deadline = Date.now() + 30_000
    while (Date.now() < deadline) {
      await sleep(interval)
      const poll = await oauth.deviceCodeGrantRequest(as, client, auth, authorization.device_code, http)
      try {
        const tokens = await oauth.processDeviceCodeResponse(as, client, poll)
        const claims = oauth.getValidatedIdTokenClaims(tokens)
        await oauth.validateApplicationLevelSignature(as, poll, http)
        const info = await userinfo(as, name, tokens.access_token, claims.sub)
        const reuse = await oauthError(
          oauth
            .deviceCodeGrantRequest(as, client, auth, authorization.device_code, http)
            .then((r) => oauth.processDeviceCodeResponse(as, client, r)),
        )
        return {
          authorization,
          polls: seen,
          claims,
          id_token_header: jwtHeader(tokens.id_token),
          userinfo: info,
          has_refresh_token: typeof tokens.refresh_token === 'string',
          reuse_error: reuse,
        }
      } catch (error) {
        if (!(error instanceof oauth.ResponseBodyError)) throw error
        seen.push(error.error)
        emit({ event: 'poll', error: error.error })
        if (error.error === 'slow_down') interval += 5 // RFC 8628 section 3.5
        else if (error.error !== 'authorization_pending') throw error
      }
    }
    throw new Error(`device flow not approved in time; polls: ${seen.join(', ')}`)
  },

  async par() {
    const as = await discover()
    const browser = new Browser()
    const flow = await codeFlow(as, 'web', browser, { par: true })
    const info = await userinfo(as, 'web', flow.tokens.access_token, flow.claims.sub)
    // RFC 9126 section 4: a request_uri is good for one authorization request only.
    const again = new URL(as.authorization_endpoint)
    again.searchParams.set('client_id', clientOf('web').client.client_id)
    again.searchParams.set('request_uri', flow.pushed.request_uri)
    const reused = await browser.request(again)
    return {
      pushed: flow.pushed,
      claims: flow.claims,
      callback: flow.callback,
      userinfo: info,
      reused_status: reused.status,
    }
  },

  async logout() {
    const as = await discover()
    const browser = new Browser()
    const name = 'web'
    const { client, registered } = clientOf(name)
    const flow = await codeFlow(as, name, browser)
    // Signed in: prompt=none answers with a code without showing anything.
    const silent = await codeFlow(as, name, browser, { extra: { prompt: 'none' } })

    const logoutState = oauth.generateRandomState()
    const endSession = new URL(as.end_session_endpoint)
    endSession.searchParams.set('id_token_hint', flow.tokens.id_token)
    endSession.searchParams.set('post_logout_redirect_uri', registered.post_logout_redirect_uri)
    endSession.searchParams.set('state', logoutState)
    const loggedOut = await browser.request(endSession)
    const location = loggedOut.headers.get('location')

    // Signed out: prompt=none must now come back with login_required (OIDC Core 3.1.2.6),
    // which the library reports as an authorization response error.
    const state = oauth.generateRandomState()
    const url = new URL(as.authorization_endpoint)
    const verifier = oauth.generateRandomCodeVerifier()
    for (const [key, value] of Object.entries({
      client_id: client.client_id,
      redirect_uri: registered.redirect_uri,
      response_type: 'code',
      scope: 'openid',
      prompt: 'none',
      state,
      nonce: oauth.generateRandomNonce(),
      code_challenge: await oauth.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
    })) {
      url.searchParams.set(key, value)
    }
    const callback = await browser.authorize(url)
    const error = await oauthError(
      Promise.resolve().then(() => oauth.validateAuthResponse(as, client, callback, state)),
    )
    return {
      silent_sub: silent.claims.sub,
      sub: flow.claims.sub,
      sid: flow.claims.sid,
      logout_status: loggedOut.status,
      logout_location: location,
      expected_location: `${registered.post_logout_redirect_uri}?state=${logoutState}`,
      prompt_none_error: error,
      prompt_none_callback: Object.fromEntries(callback.searchParams),
      session_cookies_left: browser.cookies.size,
    }
  },
}

const name = process.argv[2]
try {
  if (!scenarios[name]) throw new Error(`unknown scenario ${name}`)
  emit({ ok: true, ...(await scenarios[name]()) })
} catch (error) {
  emit({
    ok: false,
    error: `${error?.name}: ${error?.message}`,
    code: error?.code,
    cause: error?.cause,
    stack: error?.stack,
  })
  process.exitCode = 1
}
