-- Least privilege for the API roles.
--
-- * anon reads the public pricing (slug, name, multiplier, rates ...) but not where a provider lives: base_url
--   (an admin's internal engine address, e.g. an Ollama host on the private network) is no longer selectable.
-- * authenticated keeps exactly what the app does as a signed-in user (db.as_user): admins edit providers, rates
--   and keys through RLS (is_admin()); nobody creates or deletes a provider, or deletes an admin key, from the
--   app, so those grants go. Updates are limited to the columns the admin panel edits.
-- * Functions: on a Supabase project the default privileges grant EXECUTE on every new public function to anon
--   and authenticated directly, which `revoke ... from public` does not undo. Every function they never call is
--   revoked from them by name (any signature); is_admin() (used by RLS policies) and principal_status() (the
--   request's context query) are left as their migrations granted them.

revoke select on public.llm_providers from anon;
grant select (id, slug, name, api_style, default_model, enabled, credit_multiplier, byok_allowed,
              custom_base_url_allowed, sort_order, free_for_byok)
  on public.llm_providers to anon;

revoke insert, delete on public.llm_providers from authenticated;
revoke update on public.llm_providers from authenticated;
grant update (name, api_style, base_url, default_model, enabled, credit_multiplier, byok_allowed,
              custom_base_url_allowed, sort_order, free_for_byok)
  on public.llm_providers to authenticated;

revoke update on public.llm_model_rates from authenticated;
grant update (model, input_rate, output_rate, context_window, max_output_tokens)
  on public.llm_model_rates to authenticated;

revoke delete on public.llm_admin_keys from authenticated;

do $$
declare
  f regprocedure;
begin
  for f in
    select p.oid::regprocedure
    from pg_proc p join pg_namespace n on n.oid = p.pronamespace
    where (n.nspname = 'public' and p.proname in (
             'touch_updated_at', 'credits_lock_account', 'credits_adjust', 'credits_reserve', 'credits_settle',
             'credits_refund', 'credits_reserve_flex', 'request_log_insert', 'credits_settle_logged',
             'credits_refund_logged', 'gateway_admit', 'sign_in_wait', 'sign_in_failed'))
       or (n.nspname = 'private' and p.proname in (
             'bump_catalog_version', 'bump_catalog_version_on_change', 'handle_new_user'))
  loop
    execute format('revoke execute on function %s from public, anon, authenticated', f);
  end loop;
end
$$;
