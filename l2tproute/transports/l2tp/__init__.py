"""pppd/L2TP: link events from the ip-up and ip-down hooks."""
