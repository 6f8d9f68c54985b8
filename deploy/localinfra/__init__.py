"""Install and run the real servers (Kafka, PostgreSQL, FerretDB, MinIO, Prometheus) as plain
local processes.

Run from the repository root: ``python -m deploy.localinfra {install,up,down,status,run,env}``.
Everything it builds or stores lives in ``$REELFORGE_CACHE`` (default ``~/.cache/reelforge``),
outside the clone and keyed by version (as root, PostgreSQL's cluster lives under
``/var/lib/reelforge``, linked from the cache: see postgres.py); servers listen on 127.0.0.1 only.
Standard library only, so it works before the project's virtualenv exists.
"""
