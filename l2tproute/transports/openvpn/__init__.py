"""OpenVPN: the client-connect hook, its connector, the management socket, session records."""
