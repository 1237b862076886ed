-- Rates of a disabled provider are hidden like the provider itself (admins still see everything).

drop policy llm_model_rates_select_anon on public.llm_model_rates;
drop policy llm_model_rates_select on public.llm_model_rates;
create policy llm_model_rates_select_anon on public.llm_model_rates
  for select to anon
  using (exists (select 1 from public.llm_providers p where p.id = provider_id and p.enabled));
create policy llm_model_rates_select on public.llm_model_rates
  for select to authenticated
  using ((select public.is_admin())
         or exists (select 1 from public.llm_providers p where p.id = provider_id and p.enabled));
