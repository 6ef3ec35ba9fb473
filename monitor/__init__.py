"""ticker-monitor: watch pages carrying a rate ticker and alert on every change, losing none."""

__version__ = "0.1.0"
