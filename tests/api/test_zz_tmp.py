import json
def test_probe(client, make_user):
    admin = make_user(admin=True); user = make_user()
    providers = client.get("/api/admin/llm/providers", headers=admin.headers).get_json()["providers"]
    pid = next(p["id"] for p in providers if p["slug"] == "lmstudio")
    N = "\u0000"
    probes = [
        ("PUT", "/api/user/settings", user, {"first_name": "a" + N}),
        ("PUT", "/api/user/settings", user, {"task_overrides": {"t": {"provider": "openai", "model": "m" + N}}}),
        ("PUT", "/api/user/settings", user, {"monthly_credit_cap": "1" + N}),
        ("PUT", "/api/user/llm/keys/lmstudio", user, {"api_key": "abcdefghij" + N}),
        ("PUT", "/api/user/llm/keys/openai", user, {"api_key": "abcdefghij", "base_url": "https://exa" + N + "mple.com"}),
        ("PUT", "/api/user/llm/keys/a" + "%00", user, {"api_key": "abcdefghij"}),
        ("DELETE", "/api/user/llm/keys/a%00", user, None),
        ("GET", "/api/user/llm/usage?from=2026-01-01%00", user, None),
        ("POST", "/api/user/llm/quote", user, {"prompt": "hi" + N}),
        ("POST", "/v1/chat/completions", user, {"model": "m" + N, "messages": [{"role": "user", "content": "x"}]}),
        ("POST", "/v1/chat/completions", user, {"model": "lmstudio/local-model", "metadata": {"task": "t" + N}, "messages": [{"role": "user", "content": "x"}]}),
        ("PUT", f"/api/admin/llm/providers/{pid}", admin, {"name": "n" + N}),
        ("PUT", f"/api/admin/llm/providers/{pid}", admin, {"default_model": "m" + N}),
        ("PUT", f"/api/admin/llm/providers/{pid}", admin, {"base_url": "http://127.0.0.1:1234/v1" + N}),
        ("PUT", f"/api/admin/llm/providers/{pid}", admin, {"models": [{"model": "m" + N, "input_rate": 1, "output_rate": 1}]}),
        ("PUT", f"/api/admin/llm/providers/{pid}", admin, {"sort_order": "1" + N}),
        ("POST", f"/api/admin/llm/providers/{pid}/keys", admin, {"api_key": "abcdefghij" + N}),
        ("POST", f"/api/admin/llm/providers/{pid}/keys", admin, {"api_key": "abcdefghij", "label": "l" + N}),
        ("PUT", f"/api/admin/settings/providers/{pid}/multiplier", admin, {"multiplier": "1" + N}),
        ("POST", f"/api/admin/users/{user.id}/credits", admin, {"amount": 1, "reason": "r" + N}),
        ("POST", f"/api/admin/users/{user.id}/credits", admin, {"amount": "NaN", "reason": "r", "direction": "grant"}),
        ("POST", f"/api/admin/users/{user.id}/credits", admin, {"amount": "sNaN", "reason": "r"}),
        ("POST", f"/api/admin/users/{user.id}/credits", admin, {"amount": "1E+999999999", "reason": "r"}),
        ("POST", f"/api/admin/users/{user.id}/credits", admin, {"amount": "1E-999999999", "reason": "r"}),
        ("PUT", "/api/user/settings", user, {"monthly_credit_cap": "1E+999999999"}),
        ("PUT", "/api/user/settings", user, {"monthly_credit_cap": "sNaN"}),
        ("PUT", f"/api/admin/settings/providers/{pid}/multiplier", admin, {"multiplier": "sNaN"}),
        ("GET", "/api/admin/users?q=a%00", admin, None),
        ("GET", "/api/admin/logs?user=a%00", admin, None),
        ("GET", "/api/admin/logs?provider=a%00", admin, None),
        ("GET", "/api/admin/audit?action=a%00", admin, None),
        ("GET", "/api/admin/usage?from=2026-01-01%00", admin, None),
    ]
    for method, path, who, body in probes:
        r = client.open(path, method=method, headers=who.headers, json=body)
        print(r.status_code, method, path[:60], json.dumps(body)[:70], r.get_data(as_text=True)[:110])
    svc = client.application.extensions["switchboard"]
