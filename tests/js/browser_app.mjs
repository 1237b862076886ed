// A small front end (bundled by esbuild in tests/e2e/test_browser_client.py, served from another origin): the
// README's browser module (`readme-js-browser`, aliased to the snippet read from README.md) with supabase-js for the
// sign-in. A user signs in through the form; the page then lists the models, asks once as JSON and once streamed,
// and shows each answer with its receipt. Every value the test asserts is read from the page, as a user sees it.
import { createClient } from '@supabase/supabase-js'
import { listModels, askWithReceipt, streamWithReceipt } from 'readme-js-browser'

const config = window.SWITCHBOARD_CONFIG // { url, anonKey, model }, written into the page by its server
const supabase = createClient(config.url, config.anonKey, { auth: { persistSession: false } })
const $ = (id) => document.getElementById(id)

function show(id, value) {
  $(id).textContent = value ?? '(none)'
}

async function run(email, password) {
  const { data, error } = await supabase.auth.signInWithPassword({ email, password })
  if (error) throw new Error(`sign-in: ${error.message}`)
  show('signed-in', data.user.email)
  const models = await listModels(supabase, config.url)
  $('models').replaceChildren(...models.map((id) => Object.assign(document.createElement('li'), { textContent: id })))
  const json = await askWithReceipt(supabase, config.url, config.model, 'Hello')
  show('json-text', json.text)
  show('json-provider', json.provider)
  show('json-credits', json.credits)
  show('json-request-id', json.requestId)
  show('json-estimated', String(json.estimated))
  let pieces = 0
  $('stream-text').textContent = ''
  const streamed = await streamWithReceipt(supabase, config.url, config.model, 'Hello', (text) => {
    pieces += 1
    $('stream-text').textContent += text
  })
  show('stream-pieces', String(pieces))
  show('stream-reserved', streamed.reserved)
  show('stream-credits', streamed.credits)
  show('stream-estimated', String(streamed.estimated))
  await supabase.auth.signOut()
}

$('sign-in').addEventListener('submit', (event) => {
  event.preventDefault()
  const button = $('sign-in').querySelector('button')
  button.disabled = true
  show('status', 'working…')
  run($('email').value, $('password').value)
    .then(() => show('status', 'done'))
    .catch((err) => show('status', `failed: ${err.message}`))
    .finally(() => { button.disabled = false })
})
document.body.dataset.ready = 'true'
