"""System adapters: the route store, the iproute2 runner, chap-secrets, syslog, the hook
spool, the destination cache."""
