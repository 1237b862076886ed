-- /v1/responses and /v1/embeddings (issue 15): what a provider speaks and what a model is.
--
-- * llm_providers.responses_api: the provider serves OpenAI's Responses API at {base_url}/responses. /v1/responses
--   is passed through to such a provider (read only with api_style 'openai'); any other gets a translated chat
--   request.
-- * llm_model_rates.kind: 'chat' (chat completions, /v1/responses) or 'embedding' (/v1/embeddings, billed by input
--   tokens at input_rate). A model of one kind is refused on the other kind's route.

alter table public.llm_providers
  add column responses_api boolean not null default false;

alter table public.llm_model_rates
  add column kind text not null default 'chat' check (kind in ('chat', 'embedding'));

grant insert (responses_api), update (responses_api) on public.llm_providers to authenticated;
grant update (kind) on public.llm_model_rates to authenticated;
