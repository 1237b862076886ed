"""The benchmark's baseline: a bare Flask pass-through for POST /v1/chat/completions (no auth, no accounting).
Serve with `gunicorn -c gunicorn.conf.py --pythonpath bench bare_proxy:app`; BARE_UPSTREAM is the upstream's /v1."""

import os

import requests
from flask import Flask, Response, request
from requests.adapters import HTTPAdapter

UPSTREAM = os.environ.get("BARE_UPSTREAM", "http://127.0.0.1:9/v1").rstrip("/") + "/chat/completions"
app = Flask(__name__)
session = requests.Session()
session.trust_env = False
session.mount("http://", HTTPAdapter(pool_connections=8, pool_maxsize=64, max_retries=0))  # as Switchboard's


@app.post("/v1/chat/completions")
def chat_completions() -> Response:
    headers = {"Content-Type": "application/json", "Authorization": request.headers.get("Authorization", "")}
    up = session.post(UPSTREAM, data=request.get_data(), headers=headers, stream=True, timeout=(5, 120))
    ctype = up.headers.get("Content-Type", "application/json")
    if not ctype.startswith("text/event-stream"):
        with up:
            return Response(up.content, status=up.status_code, content_type=ctype)

    def relay():
        with up:
            while data := up.raw.read1(16 * 1024):
                yield data

    return Response(relay(), status=up.status_code, content_type=ctype)
