"""``python -m monitor`` runs the same command line as ``ticker-monitor``."""

from monitor.cli import main

raise SystemExit(main())
