"""The production gunicorn.conf.py, unchanged, plus one test-only hook: unexpected errors are also logged with
their traceback (the app's JSON log lines carry only the exception name), so a load-test failure can be diagnosed."""

from pathlib import Path

_PRODUCTION = Path(__file__).resolve().parents[2] / "gunicorn.conf.py"
exec(compile(_PRODUCTION.read_text(), str(_PRODUCTION), "exec"))  # noqa: S102 - our own config file


def post_worker_init(worker):  # gunicorn's hook signature
    import logging

    from webapp.redact import RedactingFilter

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("TRACE %(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(RedactingFilter())
    handler.setLevel(logging.ERROR)
    for name in ("switchboard.errors", "switchboard.gateway"):
        logging.getLogger(name).addHandler(handler)
