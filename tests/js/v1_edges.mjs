// The openai npm SDK against /v1 edges (run by tests/api/test_v1_edges.py): models.retrieve with a prefixed id
// (which contains slashes) and a bare one, a 404 in OpenAI's shape, and the `usage.switchboard_estimated` flag on a
// JSON answer and in a stream's usage chunk. Prints one JSON line.
import OpenAI from 'openai'

const openai = new OpenAI({ baseURL: `${process.env.SWITCHBOARD_URL}/v1`, apiKey: process.env.SWITCHBOARD_TOKEN,
                            maxRetries: 0 })
const pick = (m) => ({ id: m.id, owned_by: m.owned_by })

const prefixed = pick(await openai.models.retrieve(process.env.PREFIXED))
const bare = pick(await openai.models.retrieve(process.env.BARE))
let unknown = null
try {
  await openai.models.retrieve(process.env.UNKNOWN)
} catch (err) {
  if (!(err instanceof OpenAI.NotFoundError)) throw err
  unknown = { status: err.status, code: err.code }
}
const messages = [{ role: 'user', content: 'hi' }]
const reply = await openai.chat.completions.create({ model: process.env.PREFIXED, messages })
let streamEstimated = null
const stream = await openai.chat.completions.create({ model: process.env.PREFIXED, messages, stream: true,
                                                      stream_options: { include_usage: true } })
for await (const chunk of stream) {
  if (chunk.usage) streamEstimated = chunk.usage.switchboard_estimated
}
console.log(JSON.stringify({ prefixed, bare, unknown, estimated: reply.usage.switchboard_estimated,
                             streamEstimated }))
