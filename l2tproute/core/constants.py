"""Every fact that more than one module needs, in one place."""


#: Where the route files live; one `<PEER>.routes` file per peer.
DEFAULT_STORE_DIR = "/etc/l2tp-manager/routes.d"
#: The only environment variable that configures the store (ignored under sudo).
STORE_DIR_ENV = "L2TP_ROUTES_DIR"
ROUTE_FILE_SUFFIX = ".routes"
#: Caches of what the route files say (l2tproute/system/dstindex.py), never configuration: the
#: store under /etc holds only the route files and the lock.
DEFAULT_CACHE_DIR = "/var/cache/l2tproute"
#: Moves the caches for tests and the bench; like L2TP_ROUTES_DIR, ignored under sudo.
CACHE_DIR_ENV = "L2TP_CACHE_DIR"
#: Which peer holds which destination: a cache in the cache directory, checked against the files at each use.
INDEX_FILE_NAME = "dst-index"
#: Where versions before issue 28 kept it, in the store (the installer moves it out).
OLD_INDEX_FILE_NAME = ".l2tproute.dst-index"
#: A cache (the destination index) is at most this big; a larger one is rebuilt.
MAX_CACHE_BYTES = 64 << 20
#: For bench/: a file the store appends each lock hold time to, in seconds (ignored under sudo).
LOCK_TIMES_ENV = "L2TP_ROUTES_LOCK_TIMES"
#: One lock for the whole store: a fixed name, so lock files never pile up.
LOCK_FILE_NAME = ".l2tproute.lock"
#: Temporary files start with a dot and never end in `.routes`, so no reader takes
#: a half-written file for a route file.
TEMP_FILE_PREFIX = ".tmp-"
ROUTE_FILE_MODE = 0o644
#: Route files are a few lines; anything bigger is not a route file.
MAX_ROUTE_FILE_BYTES = 1 << 20

#: Who the panel is and what it may route: root's settings, read only under sudo (policy.py).
CONFIG_FILE = "/etc/l2tp-manager/l2tproute.conf"
DEFAULT_PANEL_USERS = ("www-data",)
DEFAULT_MIN_PREFIX = 8
DEFAULT_MIN_PREFIX6 = 32
#: The name servers the server depends on; the panel may not route them away.
RESOLV_CONF = "/etc/resolv.conf"

#: Our routing-protocol number (`ip route ... proto 157`): the tag that tells our
#: routes from everybody else's. Unassigned in /etc/iproute2/rt_protos and in the
#: kernel's rtnetlink.h; named `l2tproute` by contrib/iproute2/.
RT_PROTO = 157
RT_PROTO_NAME = "l2tproute"

#: Where the pppd hooks leave their events for the worker (tmpfs: sessions end with a reboot).
DEFAULT_RUN_DIR = "/run/l2tproute"
#: Moves the spool for tests; like L2TP_ROUTES_DIR, ignored under sudo.
RUN_DIR_ENV = "L2TP_RUN_DIR"
#: In the run dir: the OpenVPN sessions the root worker recorded, and the clients it could not
#: check with OpenVPN yet; either one there means OpenVPN's hooks ran on this server.
OPENVPN_SESSIONS = "openvpn"
OPENVPN_PENDING = "openvpn-pending"
#: Root's precompute of every user's OpenVPN iroutes, which the connect hook copies
#: (transports/openvpn/iroutes.py): its absence means no OpenVPN server is wired here.
OPENVPN_IROUTES = "openvpn-iroutes"

#: Moves chap-secrets for the OpenVPN hook's tests; ignored under sudo.
CHAP_SECRETS_ENV = "L2TP_CHAP_SECRETS"

PROG = "l2tp-routectl"
SYSLOG_IDENT = "l2tp-routectl"

IP_BINARY = "ip"
#: For tests: the `ip` program to run instead of the one in PATH (ignored under sudo).
IP_BINARY_ENV = "L2TP_IP_BINARY"
#: Seconds one `ip` call may take before we give up on it.
IP_TIMEOUT = 15.0
#: Seconds an `ip -batch` may take (10,000 routes take well under 2 s).
IP_BATCH_TIMEOUT = 120.0
#: Seconds a command waits for the store lock before it fails with a clear error.
LOCK_TIMEOUT = 20.0
HOOK_DEADLINE = 20

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
