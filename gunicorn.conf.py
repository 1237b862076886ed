"""Gunicorn settings. Threads, because streamed answers hold a worker for their whole length."""

import multiprocessing
import os

workers = int(os.environ.get("WEB_CONCURRENCY", max(2, multiprocessing.cpu_count())))
worker_class = "gthread"
# Measured (bench/streams_per_core.py): with 16 threads a worker serves 16 streams and everything else queues
# behind them; with 512 threads one worker held 400 concurrent 20 s streams at 0.17 cores with short requests at
# p50 12 ms. gevent held them too but short requests were ~10x slower at realistic token rates. 256 per worker:
# the kernel does not split connections evenly between workers, and with 128 the proxy benchmark's 200 open streams
# on 2 workers left one worker out of threads in 4 of 5 runs (streams queued up to 10 s); with 256, 2 of 2 passed.
threads = int(os.environ.get("GUNICORN_THREADS", "256"))
worker_connections = 1000
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "180"))
graceful_timeout = 30
keepalive = 5
accesslog = "-"
# The path without its query string (%(U)s, not the request line %(r)s): password reset and recovery links carry
# their one-time token in the query, and no secret may reach a log.
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(L)ss rid=%({x-request-id}o)s'
