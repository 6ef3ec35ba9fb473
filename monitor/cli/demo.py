"""``ticker-monitor demo``: a simulated ticker page and the real daemon, offline (monitor.demo)."""

from __future__ import annotations

import argparse

from monitor.cli.common import EXIT_OK, Subparsers


def register(sub: Subparsers) -> None:
    demo = sub.add_parser(
        "demo",
        help="watch a simulated ticker for a minute: alerts, outages, the status page (offline)",
        description="Serve a simulated ticker page on 127.0.0.1 whose values move every few "
        "seconds (now and then the ticker vanishes, then the page goes down) and run the real "
        "daemon against it with the console sink and the status page, in a temporary "
        "directory. No network, no configuration. Ctrl-C stops it.",
    )
    demo.add_argument(
        "--port", type=int, default=9464, help="status page port (9464; a free one if taken)"
    )
    demo.add_argument("--seed", type=int, help="seed of the simulation (the same moves each time)")
    demo.add_argument("--verbose", action="store_true", help="log every check, not only problems")
    demo.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from monitor.demo import main  # noqa: PLC0415 -- start-up time

    main(port=args.port, seed=args.seed, verbose=args.verbose)
    return EXIT_OK
