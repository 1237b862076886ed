-- Default provider presets and model rates. Rates are micro-credits per 1,000 tokens (1 credit = 1,000,000
-- micro-credits), set at the providers' list prices in USD per million tokens x 1,000, so 1 credit ~ 1 USD before
-- the multiplier. Local engines (LM Studio, Ollama) cost the operator only hardware: a token rate of 1 and 0.1x.
-- Idempotent: rows an admin has changed are left alone.

insert into public.llm_providers
  (slug, name, api_style, base_url, default_model, enabled, credit_multiplier, byok_allowed,
   custom_base_url_allowed, sort_order)
values
  ('openai',    'OpenAI',        'openai',    'https://api.openai.com/v1',                    'gpt-4o-mini',             true, 1.0, true, true,  10),
  ('github',    'GitHub Models', 'openai',    'https://models.github.ai/inference',           'openai/gpt-4o-mini',      true, 1.5, true, false, 20),
  ('anthropic', 'Anthropic',     'anthropic', 'https://api.anthropic.com/v1',                 'claude-haiku-4-5',        true, 1.0, true, false, 30),
  ('google',    'Google Gemini', 'openai',    'https://generativelanguage.googleapis.com/v1beta/openai', 'gemini-2.5-flash', true, 1.0, true, false, 40),
  ('groq',      'Groq',          'openai',    'https://api.groq.com/openai/v1',               'llama-3.3-70b-versatile', true, 1.0, true, false, 50),
  ('mistral',   'Mistral',       'openai',    'https://api.mistral.ai/v1',                    'mistral-small-latest',    true, 1.0, true, false, 60),
  ('lmstudio',  'LM Studio',     'openai',    'http://127.0.0.1:1234/v1',                     'local-model',             true, 0.1, true, true,  70),
  ('ollama',    'Ollama',        'openai',    'http://127.0.0.1:11434/v1',                    'llama3.2',                true, 0.1, true, true,  80)
on conflict (slug) do nothing;

-- The local engines serve without a key (the column's default is true; its migration ran before these rows).
update public.llm_providers set needs_key = false
where slug in ('lmstudio', 'ollama') and needs_key and updated_at = created_at;  -- never a row an admin changed

insert into public.llm_model_rates (provider_id, model, input_rate, output_rate, context_window, max_output_tokens)
select p.id, r.model, r.input_rate, r.output_rate, r.context_window, r.max_output_tokens
from (values
  ('openai',    'gpt-4o-mini',               150,   600,  128000,  16384),
  ('openai',    'gpt-4o',                   2500, 10000,  128000,  16384),
  ('openai',    'gpt-4.1-mini',              400,  1600, 1047576,  32768),
  ('github',    'openai/gpt-4o-mini',        150,   600,  128000,  16384),
  ('github',    'openai/gpt-4.1-mini',       400,  1600, 1047576,  32768),
  ('anthropic', 'claude-haiku-4-5',         1000,  5000,  200000,  64000),
  ('anthropic', 'claude-sonnet-4-5',        3000, 15000,  200000,  64000),
  ('google',    'gemini-2.5-flash',          300,  2500, 1048576,  65536),
  ('google',    'gemini-2.5-flash-lite',     100,   400, 1048576,  65536),
  ('groq',      'llama-3.3-70b-versatile',   590,   790,  131072,  32768),
  ('groq',      'llama-3.1-8b-instant',       50,    80,  131072, 131072),
  ('mistral',   'mistral-small-latest',      100,   300,  131072,  32768),
  ('mistral',   'mistral-large-latest',     2000,  6000,  131072,  32768),
  ('lmstudio',  'local-model',                 1,     1,    8192,   4096),
  ('ollama',    'llama3.2',                    1,     1,  131072,   8192),
  ('ollama',    'smollm2',                     1,     1,    8192,   4096)
) as r (slug, model, input_rate, output_rate, context_window, max_output_tokens)
join public.llm_providers p on p.slug = r.slug
on conflict (provider_id, model) do nothing;

-- Issue 15: OpenAI's own API speaks the Responses API (/v1/responses is passed through to it); embedding models of
-- the presets that serve OpenAI-style /embeddings (rates: list prices per million tokens x 1,000).
update public.llm_providers set responses_api = true
where slug = 'openai' and not responses_api and updated_at = created_at;  -- never a row an admin changed

insert into public.llm_model_rates (provider_id, model, input_rate, output_rate, context_window, max_output_tokens,
                                    kind)
select p.id, r.model, r.input_rate, 0, r.context_window, 1, 'embedding'
from (values
  ('openai',  'text-embedding-3-small',  20, 1000000),
  ('openai',  'text-embedding-3-large', 130, 1000000),
  ('google',  'gemini-embedding-001',   150, 1000000),
  ('mistral', 'mistral-embed',          100, 1000000),
  ('ollama',  'nomic-embed-text',         1, 1000000)
) as r (slug, model, input_rate, context_window)
join public.llm_providers p on p.slug = r.slug
on conflict (provider_id, model) do nothing;
