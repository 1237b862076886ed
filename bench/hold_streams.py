"""proxy_bench's streams phase (issue 14): N long streams held open by one Switchboard instance (the benchmark's
gunicorn and its workers), full member accounting each, while one short non-streamed chat completion is timed every
0.25 s. The slow upstream and the asyncio clients are bench/streams_per_core.py's: every streamed answer sends a
role chunk at once, then one content chunk every `interval` seconds for `seconds` seconds, then finish, usage and
[DONE]; plain answers come at once."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import streams_per_core as spc

SLOW_KEY = spc.UPSTREAM_KEY


def upstream_argv(port: int, seconds: float, interval: float) -> list[str]:
    return [sys.executable, str(Path(spc.__file__)), "--upstream", str(port), "--seconds", str(seconds),
            "--interval", str(interval)]


async def _hold(port: int, token: str, streams: int, seconds: float, interval: float, ramp: float
                ) -> tuple[list[spc.StreamRecord], list[float | None]]:
    records = [spc.StreamRecord() for _ in range(streams)]
    t0 = time.monotonic()
    ramp_end = t0 + ramp
    stop_at = ramp_end + seconds + 5.0  # a stream not done by then was not served
    shorts: list[float | None] = []

    async def short_probe() -> None:
        await asyncio.sleep(max(0.0, ramp_end + 0.5 - time.monotonic()))
        end = ramp_end + seconds - 1.0
        pending = []
        while time.monotonic() < end:
            pending.append(asyncio.create_task(spc.one_short(port, token)))
            await asyncio.sleep(spc.SHORT_EVERY)
        shorts.extend(await asyncio.gather(*pending))

    probe = asyncio.create_task(short_probe())
    tasks = []
    for i, rec in enumerate(records):
        tasks.append(asyncio.create_task(spc.one_stream(port, token, rec)))
        await asyncio.sleep(max(0.0, t0 + ramp * (i + 1) / streams - time.monotonic()))
    _done, pending = await asyncio.wait(tasks, timeout=max(0.0, stop_at - time.monotonic()))
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    await probe
    return records, shorts


def hold(port: int, token: str, streams: int, seconds: float, interval: float = 0.5, ramp: float = 2.0
         ) -> dict[str, Any]:
    """Run the phase against Switchboard on 127.0.0.1:`port`; the token's user must be allowed `streams` streams."""
    records, shorts = asyncio.run(_hold(port, token, streams, seconds, interval, ramp))
    count = round(seconds / interval)
    served = 0
    for rec in records:
        if rec.first is None or not rec.done or len(rec.chunks) != count:
            continue
        gaps = [b - a for a, b in zip([rec.first, *rec.chunks], rec.chunks, strict=False)]
        if rec.first - rec.sent <= 5.0 and max(gaps) <= 2.0:
            served += 1
    ok = [s for s in shorts if s is not None]
    return {"streams": streams, "served": served, "errors": sum(1 for r in records if r.error),
            "short_n": len(shorts), "short_failed": len(shorts) - len(ok),
            "short_p50_ms": spc._pct(ok, 0.5) * 1000, "short_p99_ms": spc._pct(ok, 0.99) * 1000}
