"""Development only: a local SMTP server (aiosmtpd) that writes every message it receives to a folder as an .eml
file, so `make run` can send real email without anything leaving the machine. The dev mail page
(webapp/web/dev_mail.py) lists the folder. Usage: python -m webapp.notify.sink --dir .local/mail --port 2525"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import threading
import time
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session


class FolderHandler:
    """aiosmtpd handler: each accepted message becomes <folder>/<time>-<random>.eml (written whole, then renamed,
    so a reader never sees half a file)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        header = f"X-Sink-Rcpt-To: {', '.join(envelope.rcpt_tos)}\r\n".encode()
        name = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{secrets.token_hex(4)}.eml"
        tmp = self.folder / f".{name}.tmp"
        tmp.write_bytes(header + content)
        os.replace(tmp, self.folder / name)
        return "250 Message accepted for delivery"


def serve(folder: Path, host: str, port: int) -> Controller:
    controller = Controller(FolderHandler(folder), hostname=host, port=port)
    controller.start()
    return controller


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", default=".local/mail")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    args = parser.parse_args()
    controller = serve(Path(args.dir), args.host, args.port)
    print(f"mail sink: smtp://{args.host}:{args.port} -> {args.dir}/*.eml", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    parent = os.getppid()
    while not stop.wait(1.0):
        if os.getppid() != parent:  # the shell that started us (it becomes gunicorn) is gone
            break
    controller.stop()


if __name__ == "__main__":
    main()
