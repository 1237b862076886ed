// The supabase-js + openai journey against Switchboard's local /auth/v1 and /v1, with the real npm packages
// (pinned in package.json, installed by scripts/setup.sh). Driven by tests/e2e/test_supabase_js_journey.py:
//
//   SUPABASE_URL, SUPABASE_ANON_KEY   the app under test (make run: http://127.0.0.1:8000 and .env.local's key)
//   JOURNEY_EMAIL, JOURNEY_PASSWORD   the account
//   JOURNEY_REUSE_SECONDS             the server's refresh-token reuse interval
//   node tests/js/journey.mjs signup     sign up (a user, no session); prints {"user_id": ...}
//   node tests/js/journey.mjs session    everything after: sign in, user, /v1 with openai, refresh, sign out
//
// Each step prints one JSON line; any failed check exits non-zero with the reason on stderr.
import assert from 'node:assert/strict'
import { createClient } from '@supabase/supabase-js'
import OpenAI from 'openai'

const url = process.env.SUPABASE_URL
const anonKey = process.env.SUPABASE_ANON_KEY
const email = process.env.JOURNEY_EMAIL
const password = process.env.JOURNEY_PASSWORD
const reuseSeconds = Number(process.env.JOURNEY_REUSE_SECONDS ?? '10')
const REPLY = 'The quick brown fox jumps over the lazy dog.'

const client = () =>
  createClient(url, anonKey, { auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false } })
const step = (name, detail = {}) => console.log(JSON.stringify({ step: name, ...detail }))
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function chat(accessToken) {
  const openai = new OpenAI({ apiKey: accessToken, baseURL: `${url}/v1`, maxRetries: 0, timeout: 30_000 })
  const completion = await openai.chat.completions.create({
    model: 'echo-1',
    messages: [{ role: 'user', content: 'hello from supabase-js' }],
  })
  return completion.choices[0].message.content
}

async function chatRefused(accessToken) {
  try {
    await chat(accessToken)
  } catch (error) {
    assert.ok(error instanceof OpenAI.AuthenticationError, `expected a 401, got ${error}`)
    return error.status
  }
  assert.fail('the access token was still accepted')
}

async function signup() {
  const { data, error } = await client().auth.signUp({ email, password, options: { data: { name: 'Js' } } })
  assert.equal(error, null, `sign-up failed: ${error?.message}`)
  assert.equal(data.session, null, 'sign-up must not sign in')
  assert.equal(data.user.email, email)
  step('signup', { user_id: data.user.id })
}

async function session() {
  const supabase = client()

  // Sign in; read and update the user.
  const signedIn = await supabase.auth.signInWithPassword({ email, password })
  assert.equal(signedIn.error, null, `sign-in failed: ${signedIn.error?.message}`)
  const first = signedIn.data.session
  assert.ok(first.access_token && first.refresh_token && first.expires_at > Date.now() / 1000)
  const { data: got, error: getError } = await supabase.auth.getUser()
  assert.equal(getError, null)
  assert.equal(got.user.email, email)
  assert.deepEqual(got.user.user_metadata, { name: 'Js' })
  const { data: updated, error: updateError } = await supabase.auth.updateUser({ data: { plan: 'journey' } })
  assert.equal(updateError, null, `update failed: ${updateError?.message}`)
  assert.deepEqual(updated.user.user_metadata, { name: 'Js', plan: 'journey' })
  step('signed_in', { user_id: got.user.id })

  // The session's access token is the openai SDK's API key.
  assert.equal(await chat(first.access_token), REPLY)
  step('chat')

  // Refresh: rotation. The used token sent again at once still gets an answer (another tab) ...
  const refreshed = await supabase.auth.refreshSession()
  assert.equal(refreshed.error, null, `refresh failed: ${refreshed.error?.message}`)
  const second = refreshed.data.session
  assert.notEqual(second.refresh_token, first.refresh_token)
  assert.equal(await chat(second.access_token), REPLY)
  const tab = await client().auth.refreshSession({ refresh_token: first.refresh_token })
  assert.equal(tab.error, null, `reuse within the interval refused: ${tab.error?.message}`)
  step('refreshed')

  // ... after the reuse interval it is refused, and the whole session ends with it.
  await sleep(reuseSeconds * 1000 + 500)
  const late = await client().auth.refreshSession({ refresh_token: first.refresh_token })
  assert.equal(late.error?.code, 'refresh_token_already_used')
  assert.equal(late.error?.status, 400)
  const after = await client().auth.refreshSession({ refresh_token: second.refresh_token })
  assert.equal(after.error?.code, 'refresh_token_not_found')
  assert.equal(await chatRefused(tab.data.session.access_token), 401)
  step('reuse_detected')

  // Sign in again and sign out: the refresh token is dead and the access token refused on the next request.
  const again = await supabase.auth.signInWithPassword({ email, password })
  assert.equal(again.error, null)
  const third = again.data.session
  assert.equal(await chat(third.access_token), REPLY)
  const { error: signOutError } = await supabase.auth.signOut()
  assert.equal(signOutError, null, `sign-out failed: ${signOutError?.message}`)
  assert.equal((await supabase.auth.getSession()).data.session, null)
  const dead = await client().auth.refreshSession({ refresh_token: third.refresh_token })
  assert.equal(dead.error?.code, 'refresh_token_not_found')
  assert.equal(await chatRefused(third.access_token), 401)
  const gone = await client().auth.getUser(third.access_token)
  assert.ok(gone.error, 'the signed-out access token still reads the user')
  step('signed_out')

  // Errors arrive in GoTrue's codes.
  const wrong = await client().auth.signInWithPassword({ email, password: 'not the passphrase at all' })
  assert.equal(wrong.error?.code, 'invalid_credentials')
  const badKey = createClient(url, 'not-the-anon-key', { auth: { persistSession: false } })
  const refusedKey = await badKey.auth.signInWithPassword({ email, password })
  assert.equal(refusedKey.error?.status, 401)
  step('errors')
}

const phase = process.argv[2]
const phases = { signup, session }
if (!phases[phase] || !url || !anonKey || !email || !password) {
  console.error('usage: SUPABASE_URL=... SUPABASE_ANON_KEY=... JOURNEY_EMAIL=... JOURNEY_PASSWORD=... ' +
    'node tests/js/journey.mjs signup|session')
  process.exit(2)
}
try {
  await phases[phase]()
} catch (error) {
  console.error(error?.stack ?? String(error))
  process.exit(1)
}
