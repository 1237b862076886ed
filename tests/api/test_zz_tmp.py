import json
def test_probe(client, make_user):
    admin = make_user(admin=True); user = make_user()
    providers = client.get("/api/admin/llm/providers", headers=admin.headers).get_json()["providers"]
    pid = next(p["id"] for p in providers if p["slug"] == "lmstudio")
    S = "\\ud800"
    raw = [
        ("PUT", "/api/user/settings", user, '{"first_name": "a%s"}' % S),
        ("POST", "/api/user/llm/quote", user, '{"prompt": "a%s"}' % S),
        ("POST", "/v1/chat/completions", user, '{"model": "lmstudio/local-model", "messages": [{"role": "user", "content": "a%s"}]}' % S),
        ("POST", "/v1/chat/completions", user, '{"model": "lmstudio/x%s", "messages": [{"role": "user", "content": "a"}]}' % S),
        ("PUT", f"/api/admin/llm/providers/{pid}", admin, '{"name": "a%s"}' % S),
        ("PUT", f"/api/admin/llm/providers/{pid}", admin, '{"base_url": "http://a%s.com"}' % S),
        ("POST", f"/api/admin/llm/providers/{pid}/keys", admin, '{"api_key": "abcdefghij", "label": "a%s"}' % S),
        ("POST", f"/api/admin/users/{user.id}/credits", admin, '{"amount": 1, "reason": "a%s"}' % S),
        ("PUT", "/api/user/settings", user, '{"task_overrides": {"t": {"provider": "lmstudio", "model": "a%s"}}}' % S),
    ]
    for method, path, who, body in raw:
        r = client.open(path, method=method, headers={**who.headers, "Content-Type": "application/json"}, data=body)
        print(r.status_code, method, path[:50], body[:70], r.get_data(as_text=True)[:110])
    for q in ["/api/admin/users?q=a%ED%A0%80", "/api/admin/logs?user=a%ED%A0%80", "/api/user/llm/keys/a%ED%A0%80"]:
        r = client.get(q, headers=admin.headers)
        print(r.status_code, q, r.get_data(as_text=True)[:110])
