"""The ways a user is connected: pppd/L2TP links and OpenVPN clients."""
