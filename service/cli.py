"""`edgedistill` entry point: a thin dispatcher. Each subcommand lives in its own module with its own
argument parser and is imported only when used, so `edgedistill submit` never loads torch."""

from __future__ import annotations

import importlib
import sys

# subcommand -> (module, help). Each module exposes main(argv: list[str]) -> int.
COMMANDS: dict[str, tuple[str, str]] = {
    "compress": ("edgedistill.workers.cli", "run the whole compression pipeline locally (no server)"),
    "serve": ("edgedistill.service.serve", "run API + worker on this machine with embedded defaults"),
    "worker": ("edgedistill.workers.worker_cli", "run a Celery worker process"),
    "submit": ("edgedistill.service.submit_cli", "upload a teacher, submit a job, follow it, download artifacts"),
    "quickstart": ("edgedistill.workers.quickstart", "make a sample teacher + data and run a first job end to end"),
    "admin": ("edgedistill.service.admin", "administration: API keys, tenants, database migrations"),
}


def _usage() -> str:
    lines = ["usage: edgedistill COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += [
        "",
        "Run 'edgedistill COMMAND --help' for a command's options and exit statuses",
        "(README.md: Exit codes).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"edgedistill: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest))


if __name__ == "__main__":
    raise SystemExit(main())
