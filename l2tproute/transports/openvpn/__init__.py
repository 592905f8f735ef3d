"""OpenVPN: the precompute the client-connect hook copies, the management socket, session records."""
