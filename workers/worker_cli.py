"""`edgedistill worker`: a Celery worker process for compression jobs."""

from __future__ import annotations

import argparse
import sys

from edgedistill.contracts.names import DEFAULT_QUEUE, QUEUES


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgedistill worker", description=__doc__)
    p.add_argument("--queues", default=DEFAULT_QUEUE, help=f"comma-separated: {', '.join(QUEUES)}")
    p.add_argument("--concurrency", type=int, default=1, help="jobs at once (one process each)")
    p.add_argument("--hostname", default=None, help="Celery node name (default celery@HOST)")
    p.add_argument("--loglevel", default="INFO")
    p.add_argument("--ping", action="store_true", help="exit 0 when a worker on this host answers (healthcheck)")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from edgedistill.service.fileperms import restrict_umask

    restrict_umask()  # job temp folders, fetched inputs and artifacts before upload: this user's only
    from edgedistill.workers import tasks
    from edgedistill.workers.celery_app import create_worker_app

    app = create_worker_app()
    tasks.register(app)  # run_job and the worker signals (maintenance loop, fork hygiene)
    if args.ping:
        import socket

        replies = app.control.ping(destination=[args.hostname or f"celery@{socket.gethostname()}"], timeout=5)
        return 0 if replies else 1
    worker_argv = ["worker", f"--queues={args.queues}", f"--concurrency={args.concurrency}"]
    worker_argv += [f"--loglevel={args.loglevel}", "--pool=prefork", "--without-gossip", "--without-mingle"]
    if args.hostname:
        worker_argv.append(f"--hostname={args.hostname}")
    app.worker_main(worker_argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
