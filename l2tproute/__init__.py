"""l2tproute: per-user static routes for L2TP/PPP servers (drop-in `l2tp-routectl`)."""

__version__ = "1.0.0"
