#!/usr/bin/env bash
# install-l2tp-per-user-routing.sh: install l2tproute (l2tp-routectl) on an L2TP/PPP server.
#
#   sudo ./install-l2tp-per-user-routing.sh            install, or upgrade the old bash tool
#   sudo ./install-l2tp-per-user-routing.sh --demo     install, then show it working in a scratch namespace
#   sudo ./install-l2tp-per-user-routing.sh --wheels DIR   install without network, from wheels in DIR
#   sudo ./install-l2tp-per-user-routing.sh --uninstall
#        ./install-l2tp-per-user-routing.sh --root DIR  install into a staging root (packagers, tests)
#   sudo ./install-l2tp-per-user-routing.sh --scheduler cron   re-apply by cron instead of systemd's timer
#   sudo ./install-l2tp-per-user-routing.sh --index-url URL    the released script: its package from a mirror
#
# For Debian 11/12 and Ubuntu 20.04-24.04. In a checkout it installs the package from the
# directory it lives in. The released copy (docs/release.md) runs alone: it installs the
# package it was released with, by name from the package index, its hash checked, and takes
# everything else from that package. Route files are never touched.
set -Eeuo pipefail
umask 022
export LC_ALL=C

PROG=install-l2tp-per-user-routing.sh
MARKER='# Installed by install-l2tp-per-user-routing.sh (l2tproute)'
BACKUP_SUFFIX=.bak-l2tproute
SYSTEM_PYTHON=/usr/bin/python3
PACKAGES=(python3-venv iproute2 sudo)
SERVICE=route-l2tp-apply-all.service
TIMER=route-l2tp-apply-all.timer
CRON_NAME=l2tproute
WORKER_SERVICE=l2tproute-worker.service
WORKER_PATH=l2tproute-worker.path
# The release step (tools/release.py) writes these two lines into the released copy: the
# only package that copy installs when it runs alone, and the sha256 of its wheel and sdist.
RELEASE_VERSION=""
RELEASE_HASHES=""

usage() {
    cat <<EOF
Usage: $PROG [--demo] [--wheels DIR | --index-url URL] [--root DIR] [--scheduler systemd|cron] [--panel-user NAME]...
       $PROG --uninstall [--root DIR]

Installs l2tp-routectl (per-user routes for xl2tpd/pppd servers) as a drop-in
replacement for the old bash tool: /usr/local/sbin/l2tp-routectl, the pppd hooks
/etc/ppp/ip-{up,down}.d/l2tp-routes and their worker, the re-apply at boot and every
minute (the units $SERVICE, $TIMER and $WORKER_PATH,
or /etc/cron.d/$CRON_NAME where systemd does not run),
/etc/sysctl.d/99-l2tp-routing.conf, /etc/sudoers.d/l2tp-routectl and
/etc/iproute2/rt_protos.d/l2tproute.conf, with a virtual environment in /opt/l2tproute.
Existing route files in /etc/l2tp-manager/routes.d are never touched; a replaced old
file is kept once as FILE$BACKUP_SUFFIX. Running it again changes nothing.

  --demo        after installing, show add/list/apply/del working in a scratch network
                namespace with a scratch route store (the real ones are not touched)
  --wheels DIR  install without network access: the package and every dependency
                from the wheels in DIR (made on a machine with access by:
                pip wheel /path/to/this/checkout -w DIR, or for the released
                script: pip wheel l2tproute==VERSION -w DIR)
  --index-url URL
                the package index (PEP 503 simple API) to install from instead of
                pip's own setting (PyPI): a mirror or an offline copy. Also taken from
                the variable L2TPROUTE_INDEX_URL. The released script checks the hash
                of its package wherever it comes from
  --uninstall   remove what this script installed and restore the backups; route
                files are kept
  --root DIR    install into DIR instead of / (no apt, systemctl or sysctl)
  --scheduler systemd|cron
                what re-applies the routes at boot and every minute: systemd's timer or
                cron; by default systemd where it is the running init (and under --root),
                cron elsewhere. Switching on a later run removes the other one's files
                (and disables its units)
  --panel-user NAME
                the web panel's user (default: www-data, or what the settings file
                /etc/l2tp-manager/l2tproute.conf already names); give it again for
                more than one. These users may run l2tp-routectl through sudo, with
                the panel's limits (docs/security.md)
  -h, --help    show this help
EOF
}

say() { printf '%s\n' "$*"; }
warn() { printf '%s: warning: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
die_usage() { printf '%s: error: %s (see: %s --help)\n' "$PROG" "$*" "$PROG" >&2; exit 2; }

# -- arguments ----------------------------------------------------------------

ROOT=""
ACTION=install
DEMO=0
SCHEDULER=""
GIVEN=0
OPT_PANEL_USERS=()
WHEELS=""
INDEX_URL=${L2TPROUTE_INDEX_URL:-}
while (($#)); do
    case "$1" in
        --root) (($# >= 2)) && [[ -n $2 ]] || die_usage "--root needs a directory"; ROOT=$2; shift 2 ;;
        --root=*) ROOT=${1#--root=}; [[ -n $ROOT ]] || die_usage "--root needs a directory"; shift ;;
        --wheels) (($# >= 2)) && [[ -n $2 ]] || die_usage "--wheels needs a directory"; WHEELS=$2; shift 2 ;;
        --wheels=*) WHEELS=${1#--wheels=}; [[ -n $WHEELS ]] || die_usage "--wheels needs a directory"; shift ;;
        --index-url) (($# >= 2)) && [[ -n $2 ]] || die_usage "--index-url needs a URL"; INDEX_URL=$2; shift 2 ;;
        --index-url=*) INDEX_URL=${1#--index-url=}; [[ -n $INDEX_URL ]] || die_usage "--index-url needs a URL"; shift ;;
        --uninstall) ACTION=uninstall; shift ;;
        --demo) DEMO=1; shift ;;
        --scheduler) (($# >= 2)) || die_usage "--scheduler needs systemd or cron"; SCHEDULER=$2; GIVEN=1; shift 2 ;;
        --scheduler=*) SCHEDULER=${1#--scheduler=}; GIVEN=1; shift ;;
        --panel-user) (($# >= 2)) && [[ -n $2 ]] || die_usage "--panel-user needs a user name"
            OPT_PANEL_USERS+=("$2"); shift 2 ;;
        --panel-user=*) OPT_PANEL_USERS+=("${1#--panel-user=}"); shift ;;
        -h | --help) usage; exit 0 ;;
        *) die_usage "unknown argument '$1'" ;;
    esac
done
if ((DEMO)) && [[ $ACTION == uninstall ]]; then die_usage "--demo and --uninstall do not go together"; fi
if ((DEMO)) && [[ -n $ROOT ]]; then die_usage "--demo needs the live system; it does not go with --root"; fi
if ((GIVEN)) && [[ $SCHEDULER != systemd && $SCHEDULER != cron ]]; then
    die_usage "--scheduler '$SCHEDULER': use systemd or cron"
fi
if ((GIVEN)) && [[ $ACTION == uninstall ]]; then
    die_usage "--scheduler does not go with --uninstall (it removes the files of both)"
fi
if ((${#OPT_PANEL_USERS[@]})) && [[ $ACTION == uninstall ]]; then
    die_usage "--panel-user and --uninstall do not go together"
fi
check_user_name() {
    [[ $1 =~ ^[A-Za-z_][A-Za-z0-9_.-]{0,31}$ ]] ||
        die_usage "panel user '$1': expected a user name like www-data (letters, digits and _ . - only)"
}
for user in "${OPT_PANEL_USERS[@]}"; do check_user_name "$user"; done

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# A checkout beside the script: install it. Otherwise (the script fetched alone) the
# released package named by RELEASE_VERSION, and the files to install come from it.
if grep -qx 'name = "l2tproute"' "$SRC/pyproject.toml" 2>/dev/null || [[ -z $RELEASE_VERSION ]]; then
    FROM=checkout
    WHEELS_HINT="pip wheel $SRC -w DIR"
else
    FROM=release
    WHEELS_HINT="pip wheel l2tproute==$RELEASE_VERSION -w DIR"
fi
if [[ -n $WHEELS ]]; then
    [[ $ACTION == install ]] || die_usage "--wheels is for installing; --uninstall needs no wheels"
    [[ -z $INDEX_URL ]] || die_usage "--wheels and --index-url do not go together (the wheels are the index)"
    [[ -d $WHEELS ]] || die_usage "--wheels '$WHEELS' is not a directory; make one with: $WHEELS_HINT"
    WHEELS=$(realpath -- "$WHEELS")
fi
if [[ -n $INDEX_URL && $ACTION == install ]]; then
    [[ $INDEX_URL =~ ^(https?|file)://[A-Za-z0-9@:%._~/+=,-]+$ ]] ||
        die_usage "--index-url '$INDEX_URL': expected an http, https or file URL of a simple package index"
fi
if [[ -n $ROOT ]]; then
    ROOT=$(realpath -m -- "$ROOT")
    [[ $ROOT =~ ^/[A-Za-z0-9/._+-]*$ ]] ||
        die_usage "--root '$ROOT': use a path of letters, digits and / . _ + - only"
    [[ $ROOT != / ]] || die_usage "--root /: run without --root to install on this system"
    LIVE=0
else
    LIVE=1
fi
if [[ $(id -u) != 0 ]]; then
    ((LIVE)) && die "run me as root: sudo ./$PROG"
    OWNER=$(id -u):$(id -g)
else
    OWNER=0:0
fi

# Installed files name the final paths (/opt/...), also under --root: a staging root is
# copied to / as it is. The venv itself works from either place (it finds its
# site-packages next to its interpreter).
VENV_FINAL=/opt/l2tproute
VENV=$ROOT$VENV_FINAL
VENV_PY=$VENV/bin/python3
FINGERPRINT=$VENV/.l2tproute-source
# The directories this script created (final paths, one a line): --uninstall removes
# each that is empty then, and no other (Debian 13 ships no /etc/iproute2, for one).
DIRS_RECORD=$VENV/.l2tproute-dirs
CMD=$ROOT/usr/local/sbin/l2tp-routectl
HOOK_UP=$ROOT/etc/ppp/ip-up.d/l2tp-routes
HOOK_DOWN=$ROOT/etc/ppp/ip-down.d/l2tp-routes
UNIT_DIR=$ROOT/etc/systemd/system
SYSCTL_FILE=$ROOT/etc/sysctl.d/99-l2tp-routing.conf
SUDOERS_FILE=$ROOT/etc/sudoers.d/l2tp-routectl
PROTOS_FILE=$ROOT/etc/iproute2/rt_protos.d/l2tproute.conf
CRON_FILE=$ROOT/etc/cron.d/$CRON_NAME
STORE_PARENT=$ROOT/etc/l2tp-manager
STORE=$STORE_PARENT/routes.d
LOCK_NAME=.l2tproute.lock
# The destination index is a cache (l2tproute/system/dstindex.py): earlier versions kept it in
# the store as INDEX_NAME; it lives in CACHE_DIR now, so routes.d holds route files and the lock.
INDEX_NAME=.l2tproute.dst-index
CACHE_DIR=$ROOT/var/cache/l2tproute
CONF_FILE=$STORE_PARENT/l2tproute.conf
LIBEXEC=$VENV/libexec
# The panel's OpenVPN server (docs/openvpn.md): when its config exists,
# its hooks go on openvpn's command line, which the panel's rewrite of the config cannot
# drop: a drop-in of openvpn@server.service, and where systemd does not run, OPTARGS in
# Debian's /etc/default/openvpn (a block between the marker line and OVPN_END). Earlier
# versions put that block into server.conf itself; a run removes it from there.
OVPN_CONF=$ROOT/etc/openvpn/server.conf
OVPN_END='# l2tproute end'
OVPN_HOOK=$VENV_FINAL/libexec/l2tp-routes-openvpn
OVPN_UNIT=openvpn@server.service
OVPN_DROP_IN=$UNIT_DIR/$OVPN_UNIT.d/l2tproute.conf
OVPN_DEFAULTS=$ROOT/etc/default/openvpn
OVPN_INIT=$ROOT/etc/init.d/openvpn
OVPN_SUDOERS=$ROOT/etc/sudoers.d/l2tproute-openvpn
# Root's precompute of every user's iroutes, which the connect hook copies: before OpenVPN
# starts (ExecStartPre, or the line in /etc/default/openvpn), as the run directory is new at boot.
OVPN_PRECOMPUTE="$VENV_FINAL/libexec/l2tp-routes-worker --iroutes"
# The OpenVPN connector Python of earlier versions (the hook needs no Python now).
OVPN_RETIRED=$LIBEXEC/l2tp-routes-openvpn-connect
# Where the units of openvpn@server come from, first found wins (as systemd looks them up).
OVPN_UNIT_FILES=("$UNIT_DIR/$OVPN_UNIT" "$UNIT_DIR/openvpn@.service" "$ROOT/lib/systemd/system/openvpn@.service"
    "$ROOT/usr/lib/systemd/system/openvpn@.service")
# The options, as config lines; on the command line each is --LINE.
OVPN_LINES=("script-security 2" "client-connect $OVPN_HOOK" "client-disconnect $OVPN_HOOK"
    "management /run/l2tproute/openvpn.sock unix" "management-client-user root")
TMPFILES_FILE=$ROOT/etc/tmpfiles.d/l2tproute.conf

# Every installed file: destination, mode, where its content comes from (in $WORK).
# $LIBEXEC holds what the sh fronts (the command, the pppd hooks) exec: the Python
# programs and the hooks' spooler; and OpenVPN's hook, for a server config to name.
FILES=(
    "$LIBEXEC/l2tp-routectl|0755|bin/l2tp-routectl.py"
    "$LIBEXEC/l2tp-routes-worker|0755|bin/l2tp-routes-worker"
    "$LIBEXEC/l2tp-routes-event|0755|bin/l2tp-routes-event"
    "$LIBEXEC/l2tp-routes-kick|0755|bin/l2tp-routes-kick"
    "$LIBEXEC/l2tp-routes-openvpn|0755|bin/l2tp-routes-openvpn"
    "$LIBEXEC/l2tproute.sh|0644|lib/l2tproute.sh"
    "$CMD|0755|bin/l2tp-routectl"
    "$HOOK_UP|0755|bin/l2tp-routes-ip-up"
    "$HOOK_DOWN|0755|bin/l2tp-routes-ip-down"
    "$SYSCTL_FILE|0644|contrib/sysctl/99-l2tp-routing.conf"
    "$PROTOS_FILE|0644|contrib/iproute2/l2tproute.conf"
    "$SUDOERS_FILE|0440|contrib/sudoers/l2tp-routectl"
)
# The re-apply at boot and every minute: exactly one of these two sets is installed.
# Without the worker's path unit the hooks start their worker themselves.
SYSTEMD_FILES=(
    "$UNIT_DIR/$SERVICE|0644|contrib/systemd/$SERVICE"
    "$UNIT_DIR/$TIMER|0644|contrib/systemd/$TIMER"
    "$UNIT_DIR/$WORKER_SERVICE|0644|contrib/systemd/$WORKER_SERVICE"
    "$UNIT_DIR/$WORKER_PATH|0644|contrib/systemd/$WORKER_PATH"
)
CRON_FILES=("$CRON_FILE|0644|contrib/cron/$CRON_NAME")

CHANGES=0
OLD_TOOL_REPLACED=0
TIMER_REPLACED=0
changed() { CHANGES=$((CHANGES + 1)); say "$*"; }
systemd_running() { ((LIVE)) && [[ -d /run/systemd/system ]]; }
if [[ -z $SCHEDULER ]]; then
    if systemd_running || ! ((LIVE)); then SCHEDULER=systemd; else SCHEDULER=cron; fi
fi
if [[ $SCHEDULER == cron ]]; then
    PACKAGES+=(cron)
    SCHEDULE_FILES=("${CRON_FILES[@]}") OTHER_FILES=("${SYSTEMD_FILES[@]}")
else
    SCHEDULE_FILES=("${SYSTEMD_FILES[@]}") OTHER_FILES=("${CRON_FILES[@]}")
fi

# -- rollback -----------------------------------------------------------------
# Every change is written to $WORK/undo first; on any failure the EXIT trap undoes
# them in reverse order, so a failed run leaves the system as it found it.

WORK=""
COMMITTED=0

undo() { printf '%s\n' "$(IFS=$'\t'; echo "$*")" >>"$WORK/undo"; }

rollback() {
    [[ -n $WORK && -s $WORK/undo ]] || return 0
    warn "rolling back the changes of this run"
    local op a b
    while IFS=$'\t' read -r op a b; do
        case "$op" in
            rm) rm -f -- "$a" ;;
            rmdir) rmdir -- "$a" 2>/dev/null || true ;;
            rmtree) rm -rf -- "$a" ;;
            restore) cp -a -- "$a" "$b" ;;
            disable) systemctl disable --quiet --now "$a" 2>/dev/null || true ;;
            enable) systemctl daemon-reload 2>/dev/null; systemctl enable --quiet ${b:+"$b"} "$a" 2>/dev/null || true ;;
            reload) systemctl daemon-reload 2>/dev/null || true ;;
        esac
    done < <(tac "$WORK/undo")
    say "Rolled back: the system is as it was before this run."
}

on_exit() {
    local status=${1:-$?}
    trap - EXIT
    if ((status != 0 && !COMMITTED)); then
        rollback || warn "rollback failed; check the files listed above by hand"
    fi
    [[ -z $WORK ]] || rm -rf -- "$WORK"
    exit "$status"
}

on_error() {
    local status=$? line=$1 command=$2
    printf '%s: error: failed (exit %s) at line %s: %s\n' "$PROG" "$status" "$line" "$command" >&2
}

# -- small helpers --------------------------------------------------------------

# Run a command quietly; on failure show what it printed and stop.
run_quiet() {
    local what=$1
    shift
    if ! "$@" >"$WORK/step.log" 2>&1; then
        sed -e 's/^/    /' "$WORK/step.log" | grep -v 'is ignored: it is neither a file nor a directory' | tail -n 25 >&2
        die "$what failed (the command was: $*)"
    fi
}

# Create a directory and its missing parents, remembering each one made for rollback
# and for --uninstall (CREATED_DIRS, written to $DIRS_RECORD at the end).
CREATED_DIRS=()
ensure_dir() {
    local dir=$1 mode=${2:-0755} missing=() d
    d=$dir
    while [[ ! -e $d && ! -L $d ]]; do
        missing=("$d" "${missing[@]}")
        d=$(dirname -- "$d")
    done
    [[ -d $d ]] || die "$d is in the way: expected a directory there"
    for d in "${missing[@]}"; do
        mkdir -m "$mode" -- "$d"
        chown "$OWNER" -- "$d" 2>/dev/null || true
        undo rmdir "$d"
        [[ $d != "$ROOT"/* ]] || CREATED_DIRS+=("${d#"$ROOT"}")
    done
}

file_state() { stat -c '%a %u:%g' -- "$1"; }
wanted_state() { printf '%o %s' "$((8#$1))" "$OWNER"; }
has_marker() { [[ -f $1 && ! -L $1 ]] && grep -qxF -- "$MARKER" "$1"; }

# Keep an old (not ours) file once as FILE.bak-l2tproute, never overwriting a backup.
backup_once() {
    local file=$1 backup=$1$BACKUP_SUFFIX
    if [[ ! -e $backup && ! -L $backup ]]; then
        cp -a -- "$file" "$backup"
        undo rm "$backup"
        changed "backed up: $file -> $backup"
    elif ! cmp -s -- "$file" "$backup"; then
        backup=$backup-$(date +%Y%m%d%H%M%S)
        cp -a -- "$file" "$backup"
        undo rm "$backup"
        changed "backed up: $file -> $backup (an older backup $1$BACKUP_SUFFIX is kept as it is)"
    fi
}

# Put one file in place atomically (temporary file + rename), if it differs.
put_file() {
    local src=$1 dest=$2 mode=$3 verb=installed tmp saved
    PUT_CHANGED=0
    if [[ -d $dest && ! -L $dest ]]; then die "$dest is a directory; expected a file there (move it away)"; fi
    if [[ -e $dest || -L $dest ]]; then
        if [[ ! -L $dest ]] && cmp -s -- "$src" "$dest" && [[ $(file_state "$dest") == "$(wanted_state "$mode")" ]]; then
            say "unchanged: $dest"
            return 0
        fi
        if ! has_marker "$dest"; then
            backup_once "$dest"
            [[ $dest != "$CMD" ]] || OLD_TOOL_REPLACED=1
        fi
        saved=$WORK/saved.$RANDOM$RANDOM
        cp -a -- "$dest" "$saved"
        undo restore "$saved" "$dest"
        verb=updated
    else
        ensure_dir "$(dirname -- "$dest")"
        undo rm "$dest"
    fi
    tmp=$(dirname -- "$dest")/.$(basename -- "$dest").l2tproute-new
    rm -f -- "$tmp"
    cp -- "$src" "$tmp"
    chmod "$mode" -- "$tmp"
    chown "$OWNER" -- "$tmp"
    mv -f -- "$tmp" "$dest"
    PUT_CHANGED=1
    changed "$verb: $dest"
}

# -- OpenVPN ------------------------------------------------------------------

strip_block() { sed "\\|^${MARKER}\$|,\\|^${OVPN_END}\$|d" -- "$1"; }
ovpn_option() { sed -n "s/^[[:space:]]*$1[[:space:]]\\{1,\\}\\([^[:space:]#;]*\\).*/\\1/p" | tail -n 1; }
ovpn_args() { printf -- '--%s ' "${OVPN_LINES[@]}" | sed 's/ $//'; }

# Takes our marked block out of FILE in place (owner and mode stay); a backup that is the
# same as what is left goes too. NOTE says what follows for the file. BLOCK_REMOVED: it did.
remove_block() {
    local file=$1 note=$2 want=$WORK/unblocked saved
    BLOCK_REMOVED=0
    [[ -f $file && ! -L $file ]] && has_marker "$file" || return 0
    strip_block "$file" >"$want"
    if [[ $ACTION == install ]]; then
        saved=$WORK/saved.$RANDOM$RANDOM
        cp -a -- "$file" "$saved"
        undo restore "$saved" "$file"
    fi
    cat -- "$want" >"$file"
    BLOCK_REMOVED=1
    changed "unwired: $file (its l2tproute block removed; $note)"
    if cmp -s -- "$file" "$file$BACKUP_SUFFIX"; then
        if [[ $ACTION == install ]]; then
            saved=$WORK/saved.$RANDOM$RANDOM
            cp -a -- "$file$BACKUP_SUFFIX" "$saved"
            undo restore "$saved" "$file$BACKUP_SUFFIX"
        fi
        rm -f -- "$file$BACKUP_SUFFIX"
        changed "removed: $file$BACKUP_SUFFIX (the same as the file now)"
    fi
}

# OVPN_EXEC_START: ExecStart of the packaged openvpn@.service (or of what overrides it),
# with our options after the program and so before its --config: a line of the panel's
# config wins over them (openvpn takes the last value given), so its script-security 3 stays 3.
ovpn_exec_start() {
    local unit line
    for unit in "${OVPN_UNIT_FILES[@]}"; do
        [[ -f $unit && -s $unit ]] || continue
        OVPN_UNIT_FOUND=${unit#"$ROOT"}
        line=$(sed -n 's/^ExecStart=//p' -- "$unit" | tail -n 1)
        if [[ $line =~ ^(/[A-Za-z0-9/._-]*/openvpn)([[:space:]].*[[:space:]]--config[[:space:]].*)$ ]]; then
            OVPN_EXEC_START="ExecStart=${BASH_REMATCH[1]} $(ovpn_args)${BASH_REMATCH[2]}"
            return 0
        fi
        warn "$OVPN_UNIT_FOUND: its ExecStart is not /PATH/openvpn ... --config FILE: the hooks are not on its" \
            "command line; add to $OVPN_CONF: $(printf '%s; ' "${OVPN_LINES[@]}" | sed 's/; $//')"
        return 1
    done
    warn "no openvpn@.service here (is the openvpn package installed?): the hooks are not on its command line;" \
        "install openvpn, then run this script again"
    return 1
}

ovpn_drop_in() {
    printf '%s\n' "$MARKER" "#" \
        "# l2tproute: the hooks of the panel's OpenVPN server on its command line, not in" \
        "# /etc/openvpn/server.conf, which the panel writes afresh (docs/openvpn.md)." \
        "# They come before --config: a line of the config wins over them." \
        "# The rest is the ExecStart of $OVPN_UNIT_FOUND as the installer" \
        "# found it: run the installer again after an upgrade of openvpn. --uninstall" \
        "# removes this file." \
        "[Service]" "ExecStartPre=-$OVPN_PRECOMPUTE" "ExecStart=" "$1"
}

# The directories OpenVPN needs when it starts (its management socket's), those its hooks
# write and the precompute they read (only root writes it; setgid: its files are the group's),
# as the server's group $1: PATH MODE GROUP, one a line.
ovpn_run_dirs() {
    printf '%s\n' "/run/l2tproute 0755 root" "/run/l2tproute/spool 1770 $1" "/run/l2tproute/openvpn-connect 1770 $1" \
        "/run/l2tproute/openvpn-iroutes 2750 $1"
}

# For /etc/init.d/openvpn, which passes OPTARGS before --config to every VPN it starts.
# The init script runs no tmpfiles.d: the run directories are made here, just before
# OpenVPN starts, as tmpfiles.d makes them where systemd runs.
ovpn_defaults_block() {
    local path mode group made=()
    while read -r path mode group; do made+=("install -d -m $mode -g $group $path"); done < <(ovpn_run_dirs "$1")
    printf '%s\n' "$MARKER" \
        "# l2tproute: the hooks of the panel's OpenVPN server (docs/openvpn.md);" \
        "# --uninstall removes this block." \
        "OPTARGS=\"\${OPTARGS:-} $(ovpn_args)\"" \
        "$(printf '%s && ' "${made[@]}")true || :" \
        "$OVPN_PRECOMPUTE >/dev/null 2>&1 || :" \
        "$OVPN_END"
}

# Where systemd runs there: live, systemd is PID 1; staged, the scheduler chosen says it.
target_runs_systemd() { if ((LIVE)); then systemd_running; else [[ $SCHEDULER == systemd ]]; fi; }

# The hooks go on openvpn@server's command line, unless the config has hooks or a management
# interface of its own (then: a warning, nothing touched). The spool becomes writable by the
# server's group (tmpfiles.d), as its hooks run with that group, and its user may start the
# root worker through sudo.
wire_openvpn() {
    if [[ ! -e $OVPN_CONF && ! -L $OVPN_CONF ]]; then
        say "note: no $OVPN_CONF: for users on an OpenVPN server, add to its config:"
        printf '    %s\n' "${OVPN_LINES[@]}"
        say "and make $(ovpn_run_dirs GROUP | sed -n 's/ 1770 GROUP$//p' | paste -sd ' ' | sed 's/ / and /g')" \
            "writable by the server's group (root:GROUP, mode 1770)," \
            "/run/l2tproute/openvpn-iroutes readable by it (root:GROUP, mode 2750) and run" \
            "$OVPN_PRECOMPUTE before OpenVPN starts"
        return 0
    fi
    [[ -f $OVPN_CONF && ! -L $OVPN_CONF ]] || die "$OVPN_CONF is not a regular file; move it away"
    local rest=$WORK/openvpn-rest level group user restart=0 path mode owner
    strip_block "$OVPN_CONF" >"$rest"
    if grep -Eq '^[[:space:]]*(client-connect|client-disconnect|management)[[:space:]]' -- "$rest"; then
        warn "$OVPN_CONF has its own client-connect, client-disconnect or management lines: not wired;" \
            "see docs/openvpn.md"
        return 0
    fi
    level=$(ovpn_option script-security <"$rest")
    if [[ -n $level ]] && ! { [[ $level =~ ^[0-9]$ ]] && ((level >= 2)); }; then
        warn "$OVPN_CONF sets script-security $level; the hooks need 2: not wired"
        return 0
    fi
    group=$(ovpn_option group <"$rest")
    [[ $group =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]*$ ]] || group=root
    if target_runs_systemd; then
        ovpn_exec_start || return 0
        ovpn_drop_in "$OVPN_EXEC_START" >"$WORK/openvpn-drop-in"
        if systemd_running; then undo reload; fi  # on a rollback: once the file is gone
        put_file "$WORK/openvpn-drop-in" "$OVPN_DROP_IN" 0644
        restart=$PUT_CHANGED
        if ((PUT_CHANGED)) && systemd_running; then systemctl daemon-reload; fi
    else
        wire_openvpn_defaults "$group" || return 0
        restart=$PUT_CHANGED
    fi
    # Only now that the command line has them: out of the config (an earlier version's block).
    remove_block "$OVPN_CONF" "the hooks are on the command line of OpenVPN now"
    ((BLOCK_REMOVED == 0)) || restart=1
    if ((restart)) && ((LIVE)); then
        if systemd_running; then
            say "note: restart OpenVPN to load its hooks: systemctl restart openvpn@server (its clients reconnect)"
        else
            say "note: restart OpenVPN to load its hooks: /etc/init.d/openvpn restart server (its clients reconnect)"
        fi
    fi
    { printf '%s\n' "$MARKER"; ovpn_run_dirs "$group" | while read -r path mode owner; do
        printf 'd %s %s root %s -\n' "$path" "$mode" "$owner"; done; } >"$WORK/tmpfiles.conf"
    put_file "$WORK/tmpfiles.conf" "$TMPFILES_FILE" 0644
    if ((PUT_CHANGED)) && ((LIVE)) && command -v systemd-tmpfiles >/dev/null; then
        run_quiet "systemd-tmpfiles --create $TMPFILES_FILE" systemd-tmpfiles --create "$TMPFILES_FILE"
    fi
    user=$(ovpn_option user <"$rest")
    wire_openvpn_sudo "${user:-nobody}"
}

# An earlier version's connector, ours by its marker line; it is not used any more.
retire_openvpn_connector() {
    local saved
    [[ -f $OVPN_RETIRED && ! -L $OVPN_RETIRED ]] && has_marker "$OVPN_RETIRED" || return 0
    saved=$WORK/saved.$RANDOM$RANDOM
    cp -a -- "$OVPN_RETIRED" "$saved"
    undo restore "$saved" "$OVPN_RETIRED"
    rm -f -- "$OVPN_RETIRED"
    changed "removed: $OVPN_RETIRED (the hook needs no Python now)"
}

# OPTARGS in /etc/default/openvpn, read by Debian's init script; not when that script passes
# them to other VPNs too (another *.conf in /etc/openvpn would get our hooks and socket).
wire_openvpn_defaults() {
    local others
    if [[ ! -f $OVPN_INIT ]] || ! grep -q -- '-- \$OPTARGS ' "$OVPN_INIT"; then
        warn "no Debian $OVPN_INIT passing OPTARGS to openvpn: the hooks are not wired where systemd does not" \
            "run; add to $OVPN_CONF: $(printf '%s; ' "${OVPN_LINES[@]}" | sed 's/; $//')"
        return 1
    fi
    others=$(find "${OVPN_CONF%/*}" -maxdepth 1 -name '*.conf' ! -name "${OVPN_CONF##*/}" -printf '%f ')
    if [[ -n $others ]]; then
        warn "/etc/openvpn has other VPNs too (${others% }): OPTARGS would give them the hooks as well, so" \
            "they are not wired; add to $OVPN_CONF: $(printf '%s; ' "${OVPN_LINES[@]}" | sed 's/; $//')"
        return 1
    fi
    [[ ! -L $OVPN_DEFAULTS ]] || die "$OVPN_DEFAULTS is a symbolic link; expected a regular file"
    { if [[ -f $OVPN_DEFAULTS ]]; then strip_block "$OVPN_DEFAULTS"; fi; ovpn_defaults_block "$1"; } \
        >"$WORK/openvpn-defaults"
    put_file "$WORK/openvpn-defaults" "$OVPN_DEFAULTS" 0644
}

# The sudo rule for the server's user: it may run l2tp-routes-kick, nothing else.
wire_openvpn_sudo() {
    local user=$1 rule=$WORK/contrib/sudoers/l2tproute-openvpn
    if [[ $user == root ]]; then
        say "note: $OVPN_CONF runs OpenVPN as root: its hooks need no sudo rule"
        return 0
    fi
    if ! [[ $user =~ ^[A-Za-z_][A-Za-z0-9_.-]{0,31}$ ]]; then
        warn "$OVPN_CONF: user $user is not a user name like nobody: no sudo rule for its hooks;" \
            "cron or systemd start the worker for their events instead"
        return 0
    fi
    sed -i "s/^nobody ALL=/$user ALL=/" "$rule"
    if command -v visudo >/dev/null; then
        run_quiet "checking the sudoers file with visudo -cf" visudo -cf "$rule"
    fi
    put_file "$rule" "$OVPN_SUDOERS" 0440
}

unwire_openvpn() {
    remove_file "$TMPFILES_FILE"
    remove_file "$OVPN_SUDOERS"
    remove_file "$OVPN_DROP_IN"
    remove_block "$OVPN_DEFAULTS" "restart OpenVPN to drop the hooks"
    remove_block "$OVPN_CONF" "restart OpenVPN to drop the hooks"
}

# -- install ------------------------------------------------------------------

check_source() {
    local f
    if [[ $FROM == release ]]; then return 0; fi  # checked once fetched (fetch_release)
    if [[ ! -f $SRC/pyproject.toml ]]; then
        die "$SRC is not an l2tproute checkout and this copy of the script is not a released one: run the" \
            "released script (docs/release.md), or the one in a complete checkout"
    fi
    DATA=$SRC
    for f in pyproject.toml README.md l2tproute/__init__.py l2tproute/fronts/worker.py l2tproute/fronts/entry.py \
        bin/l2tp-routectl bin/l2tp-routectl.py bin/l2tp-routes-ip-up bin/l2tp-routes-ip-down; do
        [[ -f $SRC/$f ]] || die "$SRC/$f is missing: run the script from a complete l2tproute checkout"
    done
    check_files "run the script from a complete l2tproute checkout"
}

# Every file to install is in $DATA (the checkout, or the package's l2tproute/files).
check_files() {
    local f
    for f in "${FILES[@]}" "${SYSTEMD_FILES[@]}" "${CRON_FILES[@]}" "|contrib/sudoers/l2tproute-openvpn"; do
        f=${f##*|}
        [[ -f $DATA/$f ]] || die "$DATA/$f is missing: $1"
        [[ $f == bin/* || $f == lib/* ]] || grep -qxF -- "$MARKER" "$DATA/$f" || die "$DATA/$f lacks the line '$MARKER'"
    done
}

# pip's sources for the venv: the wheels of --wheels only, or the index of --index-url only
# (no pip configuration or PIP_* variable adds another), or else pip's own settings.
pip_sources() {
    if [[ -n $WHEELS ]]; then
        PIP_SOURCES=(--isolated --no-index --find-links "$WHEELS")
    elif [[ -n $INDEX_URL ]]; then
        PIP_SOURCES=(--isolated --index-url "$INDEX_URL")
    else
        PIP_SOURCES=()
    fi
}
pip_env() { if ((${#PIP_SOURCES[@]})); then PIP_CONFIG_FILE=/dev/null "$@"; else "$@"; fi; }

# The released package into $WORK/release, before anything is changed: exactly
# RELEASE_VERSION, its wheel's hash checked (pip --require-hashes), unpacked into
# $WORK/package; the files to install are its l2tproute/files. A pip of its own in $WORK
# fetches it (the venv may not exist yet, and the system's python3 may have no pip).
fetch_release() {
    local hash from=${WHEELS:-${INDEX_URL:-the package index}} found
    pip_sources
    say "fetching l2tproute $RELEASE_VERSION from $from (hash checked) ..."
    run_quiet "creating a scratch virtual environment for pip" "$SYSTEM_PYTHON" -m venv "$WORK/fetch"
    {
        printf 'l2tproute==%s' "$RELEASE_VERSION"
        for hash in $RELEASE_HASHES; do printf ' --hash=%s' "$hash"; done
        printf '\n'
    } >"$WORK/release.txt"
    if ! pip_env "$WORK/fetch/bin/python3" -I -m pip download "${PIP_SOURCES[@]}" --disable-pip-version-check \
        --no-input --no-deps --only-binary :all: --require-hashes -r "$WORK/release.txt" -d "$WORK/release" \
        >"$WORK/pip.log" 2>&1; then
        if grep -q 'DO NOT MATCH THE HASHES' "$WORK/pip.log"; then
            die "the l2tproute $RELEASE_VERSION wheel from $from is not the one this script was released with" \
                "(its sha256 differs): refused; use the package released with this script"
        elif grep -q '^ERROR: No matching distribution found for l2tproute' "$WORK/pip.log"; then
            found=$(sed -n 's/.*(from versions: \(.*\)).*/\1/p' "$WORK/pip.log" | head -n 1)
            die "$from has no l2tproute $RELEASE_VERSION wheel${found:+ (it has: $found)}: this script installs" \
                "only the version it was released with; use the script released with your version"
        fi
        tail -n 25 "$WORK/pip.log" | sed -e 's/^/    /' >&2
        die "pip could not fetch l2tproute $RELEASE_VERSION from $from"
    fi
    RELEASE_WHEEL=$(find "$WORK/release" -name "l2tproute-$RELEASE_VERSION-*.whl" -print -quit)
    [[ -n $RELEASE_WHEEL ]] || die "pip fetched no l2tproute $RELEASE_VERSION wheel from $from"
    run_quiet "unpacking $RELEASE_WHEEL" "$SYSTEM_PYTHON" -I -m zipfile -e "$RELEASE_WHEEL" "$WORK/package"
    found=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' -- "$WORK/package/l2tproute/__init__.py" 2>/dev/null || true)
    [[ $found == "$RELEASE_VERSION" ]] ||
        die "the l2tproute wheel from $from is version ${found:-unknown}, not $RELEASE_VERSION, the version of this script"
    DATA=$WORK/package/l2tproute/files
    check_files "the l2tproute $RELEASE_VERSION package is incomplete"
}

install_packages() {
    ((LIVE)) || return 0
    command -v dpkg-query >/dev/null && command -v apt-get >/dev/null ||
        die "this installer needs Debian or Ubuntu (dpkg and apt-get); install python3-venv, iproute2 and sudo by hand, then use --root"
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        # Another cron daemon (cronie, busybox) also runs /etc/cron.d: do not replace it.
        [[ $p == cron ]] && cron_daemon_installed && continue
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    apt_install "${missing[@]}"
}

cron_daemon_installed() { [[ -x /usr/sbin/cron || -x /usr/sbin/crond ]]; }

apt_install() {
    say "installing from the distribution: $*"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends "$@" >"$WORK/apt.log" 2>&1; then
        run_quiet "apt-get update" apt-get update -q
        run_quiet "apt-get install $*" apt-get install -y -q --no-install-recommends "$@"
    fi
    changed "installed packages: $*"
}

python_ok() { [[ -x $1 ]] && "$1" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 8))' 2>/dev/null; }

# The interpreter for the venv: python3, unless it is older than 3.8; then the distribution's
# own python3.8 (Ubuntu 18.04: python3 is 3.6, its archive has python3.8 and python3.8-venv).
# Only the distribution's packages: no interpreter is ever fetched from anywhere else.
choose_python() {
    python_ok "$SYSTEM_PYTHON" && return 0
    if ((LIVE)) && [[ -x /usr/bin/python3 ]] && ! python_ok /usr/bin/python3.8 &&
        apt-cache show python3.8-venv >/dev/null 2>&1; then
        apt_install python3.8 python3.8-venv
    fi
    if python_ok /usr/bin/python3.8; then
        SYSTEM_PYTHON=/usr/bin/python3.8
        return 0
    fi
    die "no usable Python: l2tproute needs /usr/bin/python3 3.8 or later with the venv module (packages python3 and python3-venv), or the packages python3.8 and python3.8-venv"
}

# -- the panel's users and limits (/etc/l2tp-manager/l2tproute.conf) ---------

# The panel_users of a settings file, as words (the last such line counts, as for the tool: it refuses two).
conf_users() { sed -n 's/^[[:space:]]*panel_users[[:space:]]*=//p' -- "$1" | tail -n 1 | tr ',' ' ' | xargs; }

# Who the panel is for this run: --panel-user, else what the settings file names, else www-data.
choose_panel_users() {
    local user
    if ((${#OPT_PANEL_USERS[@]})); then
        PANEL_USERS=("${OPT_PANEL_USERS[@]}")
    elif [[ -f $CONF_FILE && ! -L $CONF_FILE ]] && [[ -n $(conf_users "$CONF_FILE") ]]; then
        read -r -a PANEL_USERS <<<"$(conf_users "$CONF_FILE")"
    else
        PANEL_USERS=(www-data)
    fi
    for user in "${PANEL_USERS[@]}"; do check_user_name "$user"; done
}

panel_user_list() { local IFS=,; printf '%s' "${PANEL_USERS[*]}" | sed 's/,/, /g'; }

# The settings file as this script writes it.
conf_text() {
    printf '%s\n' "$MARKER" \
        "#" \
        "# The web panel's users and what they may route (docs/security.md). l2tp-routectl" \
        "# reads it when it runs under sudo; a sudo call by one of panel_users (comma" \
        "# separated) may not use --force, --netns or another table, nor route the" \
        "# server's own addresses, networks, gateways or name servers, another user's" \
        "# networks, or anything shorter than min_prefix (IPv4) / min_prefix6 (IPv6)." \
        "# Keep it owned by root and writable by root only." \
        "panel_users = $(panel_user_list)" \
        "min_prefix = 8" \
        "min_prefix6 = 32"
}

# New: written whole. Present: kept as it is (an administrator's min_prefix stays), except
# its panel_users line when --panel-user names others; owner and mode are put right.
install_config() {
    local want=$WORK/l2tproute.conf
    if [[ ! -e $CONF_FILE && ! -L $CONF_FILE ]]; then
        conf_text >"$want"
    else
        [[ -f $CONF_FILE && ! -L $CONF_FILE ]] || die "$CONF_FILE is not a regular file; move it away"
        if ((${#OPT_PANEL_USERS[@]})) && [[ $(conf_users "$CONF_FILE") != "${PANEL_USERS[*]}" ]]; then
            if grep -q '^[[:space:]]*panel_users[[:space:]]*=' -- "$CONF_FILE"; then
                sed "s/^[[:space:]]*panel_users[[:space:]]*=.*/panel_users = $(panel_user_list)/" -- "$CONF_FILE" >"$want"
            else
                { cat -- "$CONF_FILE"; printf 'panel_users = %s\n' "$(panel_user_list)"; } >"$want"
            fi
        else
            cp -- "$CONF_FILE" "$want"
        fi
    fi
    put_file "$want" "$CONF_FILE" 0644
}

# Removed only as this script wrote it (for whichever panel users); a file changed by hand stays.
remove_config() {
    local backup=$CONF_FILE$BACKUP_SUFFIX
    if has_marker "$CONF_FILE"; then
        read -r -a PANEL_USERS <<<"$(conf_users "$CONF_FILE")"
        ((${#PANEL_USERS[@]})) || PANEL_USERS=(www-data)
        if conf_text | cmp -s -- - "$CONF_FILE"; then
            rm -f -- "$CONF_FILE"
            changed "removed: $CONF_FILE"
        else
            say "left alone: $CONF_FILE (changed since it was installed)"
        fi
    elif [[ -e $CONF_FILE || -L $CONF_FILE ]]; then
        say "left alone: $CONF_FILE (not installed by this script)"
    fi
    if [[ -e $backup || -L $backup ]] && [[ ! -e $CONF_FILE && ! -L $CONF_FILE ]]; then
        mv -- "$backup" "$CONF_FILE"
        changed "restored: $CONF_FILE (from $backup)"
    fi
}

# The contents to install, prepared (and checked) in $WORK before anything is touched.
prepare() {
    # -I: PYTHON* variables, the user site and the current directory are ignored (sudo, pppd).
    # -S: no `site` module, a large part of every start; the one directory it would add,
    # the venv's site-packages, the script's next lines add (so no .pth file ever runs).
    local name shebang="#!$VENV_FINAL/bin/python3 -IS"
    choose_python
    if [[ $FROM == release ]]; then fetch_release; fi
    SITE_PACKAGES=$VENV_FINAL/lib/python$("$SYSTEM_PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')/site-packages
    [[ $SITE_PACKAGES =~ ^[A-Za-z0-9/._-]+$ ]] || die "unexpected site-packages path '$SITE_PACKAGES'"
    mkdir -p "$WORK/src" "$WORK/bin" "$WORK/contrib"
    if [[ $FROM == checkout ]]; then
        cp -- "$SRC/pyproject.toml" "$SRC/README.md" "$WORK/src/"
        # The package's modules only (no caches, no editor files), its layer folders kept.
        (cd -- "$SRC" && find l2tproute -name '*.py' -type f -print0 | sort -z | xargs -0 cp --parents -t "$WORK/src/")
        cp -r -- "$SRC/bin" "$SRC/lib" "$SRC/contrib" "$WORK/src/"  # shipped in the package (pyproject.toml)
    fi
    # The Python programs: the venv's interpreter, isolated, with exactly its site-packages.
    for name in l2tp-routectl.py l2tp-routes-worker; do
        {
            printf '%s\n%s\n' "$shebang" "$MARKER"
            printf 'import sys\nsys.path.append("%s")  # -S skipped site, which would add it\n' "$SITE_PACKAGES"
            tail -n +2 -- "$DATA/bin/$name"
        } >"$WORK/bin/$name"
    done
    # The POSIX sh fronts, as they are (they name the final paths), marked on their second line.
    mkdir -p "$WORK/lib"
    for name in bin/l2tp-routectl bin/l2tp-routes-ip-up bin/l2tp-routes-ip-down bin/l2tp-routes-event \
        bin/l2tp-routes-kick bin/l2tp-routes-openvpn lib/l2tproute.sh; do
        { head -n 1 -- "$DATA/$name"; printf '%s\n' "$MARKER"; tail -n +2 -- "$DATA/$name"; } >"$WORK/$name"
    done
    cp -r -- "$DATA/contrib/systemd" "$DATA/contrib/cron" "$DATA/contrib/sysctl" "$DATA/contrib/iproute2" "$DATA/contrib/sudoers" "$WORK/contrib/"
    sed -i "s/^www-data ALL=/$(panel_user_list) ALL=/" "$WORK/contrib/sudoers/l2tp-routectl"
    if command -v visudo >/dev/null; then
        run_quiet "checking the sudoers file with visudo -cf" visudo -cf "$WORK/contrib/sudoers/l2tp-routectl"
    elif ((LIVE)); then
        die "visudo is missing; install the sudo package"
    else
        warn "visudo is not installed: the sudoers file was not checked"
    fi
}

fingerprint() {
    {
        "$SYSTEM_PYTHON" -c 'import sys; print(sys.version)'
        if [[ $FROM == release ]]; then
            (cd "$WORK/release" && sha256sum -- "${RELEASE_WHEEL##*/}")
        else
            (cd "$WORK/src" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
        fi
    } | sha256sum | cut -d' ' -f1
}

# Import what the installed scripts import, started as they start: -IS with only the
# venv's site-packages added (no .pth file processed).
check_imports() {
    "$VENV_PY" -IS -c 'import sys; sys.path.append(sys.argv[1]); import l2tproute.fronts.entry, l2tproute.fronts.worker, l2tproute.fronts.cli' \
        "$ROOT$SITE_PACKAGES"
}

source_version() {
    if [[ $FROM == release ]]; then printf '%s\n' "$RELEASE_VERSION"; return 0; fi
    sed -n 's/^__version__ = "\(.*\)"$/\1/p' -- "$SRC/l2tproute/__init__.py"
}

# Offline: this checkout's own wheel and its dependencies from $WHEELS only. No pip
# configuration or PIP_* variable applies (an index or a constraint there would reach out).
# The package comes as a built wheel, so no build backend (setuptools) is needed here.
pip_install_wheels() {
    local version missing differs
    version=$(source_version)
    say "installing l2tproute $version into $VENV from the wheels in $WHEELS (pip, no network) ..."
    if ! PIP_CONFIG_FILE=/dev/null "$VENV_PY" -I -m pip --isolated install --disable-pip-version-check --no-input \
        --no-compile --upgrade --no-index --find-links "$WHEELS" "l2tproute==$version" >"$WORK/pip.log" 2>&1; then
        missing=$(sed -n 's/^ERROR: No matching distribution found for //p' "$WORK/pip.log" | head -n 1)
        [[ -n $missing ]] || { tail -n 25 "$WORK/pip.log" | sed -e 's/^/    /' >&2; die "pip install from $WHEELS failed"; }
        die "$WHEELS has no wheel for $missing (for Python $("$VENV_PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])'));" \
            "make the directory on a machine with network access with: $WHEELS_HINT"
    fi
    # A wheel of the same version built from other sources would install quietly: refuse it.
    if differs=$(package_mismatch); then
        die "the l2tproute wheel in $WHEELS was not built from this checkout ($differs differs); rebuild it: pip wheel $SRC -w $WHEELS"
    fi
}

# The first module that is not the same in this checkout and in the venv, if any.
package_mismatch() {
    local installed=$ROOT$SITE_PACKAGES name
    while IFS= read -r -d '' name; do
        cmp -s -- "$WORK/src/$name" "$installed/$name" || { printf '%s' "$name"; return 0; }
    done < <(cd -- "$WORK/src" && find l2tproute -name '*.py' -type f -print0
        # l2tproute/files: bin/, lib/ and contrib/, installed from the checkout itself here.
        cd -- "$installed" && find l2tproute -path l2tproute/files -prune -o -name '*.py' -type f -print0)
    return 1
}

# pip builds a package from pyproject.toml alone (no setup.py) from 19.0 on. Ubuntu 18.04's
# python3.8 -m venv brings the distribution's pip 9.0.1, which cannot.
PIP_FOR_PYPROJECT=19.0
venv_pip_version() { "$VENV_PY" -I -c 'import pip; print(pip.__version__)' 2>/dev/null || echo unknown; }
venv_pip_builds_pyproject() {
    "$VENV_PY" -I -c 'import sys, pip; sys.exit(tuple(int(p) for p in pip.__version__.split(".")[:2]) < tuple(int(p) for p in sys.argv[1].split(".")))' \
        "$PIP_FOR_PYPROJECT" 2>/dev/null
}
ensure_pip_builds_pyproject() {
    venv_pip_builds_pyproject && return 0
    run_quiet "upgrading pip $(venv_pip_version) in $VENV, which cannot build this package," \
        pip_env "$VENV_PY" -I -m pip install "${PIP_SOURCES[@]}" --disable-pip-version-check --no-input --upgrade \
        "pip>=$PIP_FOR_PYPROJECT"
    changed "upgraded pip in $VENV to $(venv_pip_version) (from the package index)"
}

install_venv() {
    local want
    want=$(fingerprint)
    if [[ -f $FINGERPRINT && $(cat -- "$FINGERPRINT") == "$want" ]] &&
        check_imports >/dev/null 2>&1; then
        say "unchanged: $VENV (l2tproute $(source_version))"
        return 0
    fi
    if [[ -e $VENV || -L $VENV ]]; then
        [[ -f $VENV/pyvenv.cfg && ! -L $VENV ]] || die "$VENV exists and is not a Python virtual environment; move it away"
        # Keep the old venv until the end: a failure later puts it back as it was.
        if "$VENV_PY" -I -c 'import sys' >/dev/null 2>&1; then
            cp -a -- "$VENV" "$WORK/old-venv"  # upgraded in place: the command keeps working meanwhile
        else
            mv -- "$VENV" "$WORK/old-venv"  # from an older Python (a distribution upgrade): make a new one
        fi
        undo restore "$WORK/old-venv" "$VENV"
        undo rmtree "$VENV"
    fi
    if [[ ! -e $VENV ]]; then
        ensure_dir "$(dirname -- "$VENV")"
        [[ -d $WORK/old-venv ]] || undo rmtree "$VENV"
        run_quiet "creating the virtual environment $VENV" "$SYSTEM_PYTHON" -m venv "$VENV"
        changed "created: $VENV (virtual environment)"
    fi
    if [[ $FROM == release ]]; then
        # The fetched wheel itself (hash checked), also over an install of the same version
        # from elsewhere (a checkout), which pip would keep; then its dependencies, from the
        # same source.
        say "installing l2tproute $RELEASE_VERSION into $VENV (pip) ..."
        run_quiet "pip install into $VENV" pip_env "$VENV_PY" -I -m pip install "${PIP_SOURCES[@]}" \
            --disable-pip-version-check --no-input --no-compile --no-deps --force-reinstall "$RELEASE_WHEEL"
        run_quiet "pip install into $VENV" pip_env "$VENV_PY" -I -m pip install "${PIP_SOURCES[@]}" \
            --disable-pip-version-check --no-input --no-compile --upgrade "$RELEASE_WHEEL"
    elif [[ -n $WHEELS ]]; then
        pip_install_wheels
    else
        pip_sources
        ensure_pip_builds_pyproject
        say "installing l2tproute into $VENV (pip) ..."
        run_quiet "pip install into $VENV" pip_env "$VENV_PY" -I -m pip install "${PIP_SOURCES[@]}" \
            --disable-pip-version-check --no-input --no-compile --upgrade "$WORK/src"
    fi
    # Compiled now, as root: at run time the venv is read-only (ProtectSystem=strict, or
    # www-data through sudo would write root's caches), and every call pays for
    # compiling what has no .pyc. -s/-p: tracebacks name the final paths.
    if [[ -n $ROOT ]]; then
        run_quiet "byte-compiling $VENV" "$VENV_PY" -I -m compileall -q -j 0 -s "$ROOT" -p / "$VENV/lib"
    else
        run_quiet "byte-compiling $VENV" "$VENV_PY" -I -m compileall -q -j 0 "$VENV/lib"
    fi
    [[ -d $ROOT$SITE_PACKAGES/l2tproute ]] || die "pip did not install l2tproute into $ROOT$SITE_PACKAGES"
    run_quiet "checking the installed package" check_imports
    printf '%s\n' "$want" >"$FINGERPRINT"
    chown -R "$OWNER" -- "$VENV" 2>/dev/null || true
    changed "installed: l2tproute into $VENV"
}

install_files() {
    local entry dest mode src
    for entry in "${FILES[@]}" "${SCHEDULE_FILES[@]}"; do
        IFS='|' read -r dest mode src <<<"$entry"
        put_file "$WORK/$src" "$dest" "$mode"
        if ((PUT_CHANGED)) && [[ $dest == "$SYSCTL_FILE" ]]; then SYSCTL_CHANGED=1; fi
        if ((PUT_CHANGED)) && [[ $dest == "$UNIT_DIR/$TIMER" ]]; then TIMER_REPLACED=1; fi
    done
}

# The scheduler not chosen: its files go if this script installed them (a switch on a
# later run), so no route is applied twice a minute by both.
retire_other_scheduler() {
    local entry dest mode src unit saved reload=0
    if [[ $SCHEDULER == cron ]] && systemd_running; then
        for unit in "$TIMER" "$SERVICE" "$WORKER_PATH"; do
            has_marker "$UNIT_DIR/$unit" && systemctl is-enabled --quiet "$unit" 2>/dev/null || continue
            run_quiet "systemctl disable --now $unit" systemctl disable --quiet --now "$unit"
            if [[ $unit != "$SERVICE" ]]; then undo enable "$unit" --now; else undo enable "$unit"; fi
            changed "disabled: $unit (cron re-applies instead)"
        done
    fi
    for entry in "${OTHER_FILES[@]}"; do
        IFS='|' read -r dest mode src <<<"$entry"
        if has_marker "$dest"; then
            saved=$WORK/saved.$RANDOM$RANDOM
            cp -a -- "$dest" "$saved"
            undo restore "$saved" "$dest"
            rm -f -- "$dest"
            changed "removed: $dest ($SCHEDULER re-applies instead)"
            [[ $dest != "$UNIT_DIR"/* ]] || reload=1
        elif [[ -e $dest || -L $dest ]]; then
            say "left alone: $dest (not installed by this script)"
        fi
    done
    if ((reload)) && systemd_running; then systemctl daemon-reload; fi
}

# Add this run's new directories to the record of earlier runs (read before the venv,
# where it lives, could be made anew).
record_dirs() {
    local want saved
    want=$({ printf '%s' "$DIRS_BEFORE"; printf '%s\n' "${CREATED_DIRS[@]}"; } | grep -v '^$' | sort -u || true)
    [[ -n $want ]] || return 0
    [[ -f $DIRS_RECORD && $(cat -- "$DIRS_RECORD") == "$want" ]] && return 0
    if [[ -f $DIRS_RECORD ]]; then
        saved=$WORK/saved.$RANDOM$RANDOM
        cp -a -- "$DIRS_RECORD" "$saved"
        undo restore "$saved" "$DIRS_RECORD"
    else
        undo rm "$DIRS_RECORD"
    fi
    printf '%s\n' "$want" >"$DIRS_RECORD"
}

install_store() {
    if [[ -d $STORE ]]; then
        say "unchanged: $STORE (route store; its files are never touched)"
        return 0
    fi
    ensure_dir "$STORE" 0755
    changed "created: $STORE (route store)"
}

# An upgrade from a version that kept the destination index in the store moves it out; the
# tool checks it against the files at each use and rebuilds it when it is not of this version.
move_index_out() {
    local old=$STORE/$INDEX_NAME saved
    [[ -e $old || -L $old ]] || return 0
    if [[ ! -f $old || -L $old ]]; then
        warn "$old is not a file l2tproute wrote; left alone (remove it by hand)"
        return 0
    fi
    ensure_dir "$CACHE_DIR" 0755
    saved=$WORK/old-index.$RANDOM$RANDOM
    cp -a -- "$old" "$saved"
    undo restore "$saved" "$old"
    undo rm "$CACHE_DIR/dst-index"
    mv -f -- "$old" "$CACHE_DIR/dst-index"
    changed "moved: $old to $CACHE_DIR/dst-index (a cache; the store keeps route files only)"
}

# The cache is the tool's own, rebuilt from the route files whenever needed.
remove_cache_dir() {
    [[ -d $CACHE_DIR && ! -L $CACHE_DIR ]] || return 0
    rm -rf -- "$CACHE_DIR"
    changed "removed: $CACHE_DIR (a cache of the route files)"
}

activate() {
    if ! ((LIVE)); then
        if [[ $SCHEDULER == cron ]]; then
            say "note: staging root $ROOT: no sysctl; cron on the target system runs /etc/cron.d/$CRON_NAME"
        else
            say "note: staging root $ROOT: no systemctl, no sysctl; enable $TIMER on the target system"
        fi
        return 0
    fi
    run_quiet "checking the whole sudoers configuration (visudo -c)" visudo -c
    if [[ $SCHEDULER == cron ]]; then
        # cron reads /etc/cron.d by itself (every minute): nothing to reload.
        pgrep -x 'cron|crond' >/dev/null 2>&1 ||
            say "note: no cron daemon is running here: the re-apply in $CRON_FILE runs once one does" \
                "(service cron start, or your init's way)"
    elif systemd_running; then
        systemctl daemon-reload
        local unit
        for unit in "$SERVICE" "$TIMER" "$WORKER_PATH"; do
            if ! systemctl is-enabled --quiet "$unit" 2>/dev/null; then
                run_quiet "systemctl enable $unit" systemctl enable --quiet "$unit"
                undo disable "$unit"
                changed "enabled: $unit"
            fi
        done
        release_stuck_service
        for unit in "$TIMER" "$WORKER_PATH"; do
            if ! systemctl is-active --quiet "$unit"; then
                run_quiet "systemctl start $unit" systemctl start "$unit"
                changed "started: $unit"
            elif [[ $unit == "$TIMER" ]] && ((TIMER_REPLACED)); then
                # Armed by the old file's settings: restarted, it counts from ours.
                run_quiet "systemctl restart $unit" systemctl restart "$unit"
                changed "restarted: $unit (its unit file was replaced)"
            fi
        done
    else
        say "note: systemd is not running here: $SERVICE, $TIMER and $WORKER_PATH are installed but not" \
            "enabled (the pppd hooks start their worker themselves); once it runs:" \
            "systemctl enable --now $TIMER $SERVICE $WORKER_PATH"
    fi
    if [[ $(sysctl -n net.ipv4.ip_forward 2>/dev/null || true) != 1 ]] || ((SYSCTL_CHANGED)); then
        apply_sysctl
    fi
}

# The old bash system's service had RemainAfterExit=yes: after one run it stays active
# (exited) until reboot, and its timer, waiting for it to end, never starts it again. Ours
# has no RemainAfterExit, so active (exited) is only ever that old state, left across the
# unit file's replacement: stopped (nothing runs, nothing is undone), the timer starts ours
# at its next elapse. A rerun finds and repairs the state the same way.
release_stuck_service() {
    [[ $(systemctl show --value -p SubState "$SERVICE" 2>/dev/null) == exited ]] || return 0
    run_quiet "systemctl stop $SERVICE" systemctl stop "$SERVICE"
    changed "stopped: $SERVICE (it stayed active (exited) after a run of the old unit, which had" \
        "RemainAfterExit=yes, and the timer never starts a unit that is still active)"
}

# When the timer elapses next, as systemd holds it: "in N s, at HH:MM:SS ZONE" (the clock time
# rounded down: systemd never fires before it), or nothing when it has none (NEXT -).
timer_next() {
    local path next
    path=/org/freedesktop/systemd1/unit/$(printf '%s' "$TIMER" | sed 's/-/_2d/g; s/\./_2e/g')
    next=$(busctl get-property org.freedesktop.systemd1 "$path" org.freedesktop.systemd1.Timer \
        NextElapseUSecMonotonic 2>/dev/null | sed -n 's/^t //p')
    [[ $next =~ ^[0-9]+$ ]] && ((next > 0 && next < 2 ** 62)) || return 0
    "$SYSTEM_PYTHON" -c '
import sys, time
left = max(0.0, (int(sys.argv[1]) - time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000) / 1e6)
print("in %d s, at %s" % (round(left), time.strftime("%H:%M:%S %Z", time.localtime(time.time() + left))))' "$next"
}

# The old tool's routes that apply takes over: proto boot, table main, via a gateway, on a link
# that carries a peer (reconcile.old_tool_routes; apply adopts those of stored lines).
old_tool_route_count() {
    local links
    links=$(ip -4 -o addr show 2>/dev/null | sed -n 's/^[0-9]*: \([^ ]*\) .* peer .*/\1/p' | sort -u)
    [[ -n $links ]] || { echo 0; return 0; }
    ip -4 route show table main proto boot 2>/dev/null |
        awk -v links="$links" 'BEGIN { n = split(links, l, "\n"); for (i = 1; i <= n; i++) up[l[i]] = 1 }
            { for (i = 1; i < NF; i++) if ($i == "dev" && up[$(i + 1)] && / via /) { c++; break } }
            END { print c + 0 }'
}

# What runs the next apply and when, as systemd or cron will do it; the old tool's routes
# that it takes over, when there are any.
say_next_apply() {
    local left old=0 when
    if ! ((LIVE)); then
        ((OLD_TOOL_REPLACED)) || return 0
        say "The routes the old tool put in the kernel are taken over by the next apply on the target system" \
            "(its timer or cron runs it within a minute)."
        return 0
    fi
    [[ ! -e $CMD$BACKUP_SUFFIX ]] || old=$(old_tool_route_count)
    if [[ $SCHEDULER == cron ]]; then
        when="cron runs the next apply at the start of the next minute"
        pgrep -x 'cron|crond' >/dev/null 2>&1 || when="cron runs the next apply once a cron daemon runs"
    elif ! systemd_running; then
        return 0
    else
        # A timer that elapsed during this run waits for the apply it started (running), or has
        # not re-armed yet (elapsed): looked at again for a moment before it counts as stuck.
        local tries=0 state
        until left=$(timer_next) && [[ -n $left ]]; do
            state=$(systemctl show --value -p SubState "$TIMER" 2>/dev/null)
            if [[ $state == running || $state == elapsed ]] &&
                [[ $(systemctl show --value -p SubState "$SERVICE" 2>/dev/null) != exited ]]; then
                break
            fi
            ((++tries < 20)) || break
            sleep 0.25
        done
        if [[ -n $left ]]; then
            when="$TIMER runs the next apply $left, then every 60 s"
        elif [[ $state == running || $state == elapsed ]] && ((tries < 20)); then
            when="$TIMER started the next apply just now, then runs it every 60 s"
        else
            warn "$TIMER has no next elapse (systemctl list-timers shows NEXT -, the timer is $state): run this" \
                "script again"
            return 0
        fi
    fi
    if ((old > 0)); then
        say "Next: $when; it takes over the routes the old tool put in the kernel for stored lines" \
            "($old routes of the old tool on connected links now)."
    else
        say "Next: $when."
    fi
}

# The sysctl file, one setting at a time, each reported as it went. Not `sysctl -p`:
# procps 3.3.17 (Debian 11) fails on a glob that matches nothing (ppp*, before any
# session) after it has set the keys above it, so its status tells nothing. A glob
# reaches the links that exist now; the pppd hook sets rp_filter on each new ppp link.
apply_sysctl() {
    local line key value path glob parts i links done=() none=()
    while IFS= read -r line || [[ -n $line ]]; do
        [[ $line =~ ^[[:space:]]*-?([A-Za-z0-9_.*/-]+)[[:space:]]*=[[:space:]]*([^[:space:]]+)[[:space:]]*$ ]] ||
            continue
        key=${BASH_REMATCH[1]} value=${BASH_REMATCH[2]} links="" glob=-1
        IFS=. read -ra parts <<<"$key"
        for i in "${!parts[@]}"; do [[ ${parts[i]} != *'*'* ]] || glob=$i; done
        for path in /proc/sys/${key//.//}; do  # a glob expands to the links there are now
            [[ -f $path ]] || continue
            if ! printf '%s\n' "$value" 2>"$WORK/sysctl.log" >"$path"; then
                warn "could not set $key = $value now ($(sed -n '1s/.*: //p' "$WORK/sysctl.log")); it applies at the next boot"
                continue 2
            fi
            IFS=/ read -ra parts <<<"${path#/proc/sys/}"
            ((glob < 0)) || links+=" ${parts[glob]}"
        done
        if ((glob < 0)) && [[ -f /proc/sys/${key//.//} ]]; then
            done+=("$key = $value")
        elif ((glob < 0)); then
            warn "could not set $key = $value now (no /proc/sys/${key//.//} here); it applies at the next boot"
        elif [[ -n $links ]]; then
            done+=("$key = $value on$links")
        else
            none+=("$key")
        fi
    done <"$SYSCTL_FILE"
    if ((${#done[@]})); then
        changed "applied: $SYSCTL_FILE: $(printf '%s; ' "${done[@]}" | sed 's/; $//')"
    fi
    if ((${#none[@]})); then
        say "note: ${none[*]}: no such link now; the pppd hook sets it on each ppp link as it comes up"
    fi
}

# OpenVPN session records of the version before, flat in /run/l2tproute/openvpn, were the
# host's (this script runs there): into the host's directory, where the new code reads them
# (docs/namespaces.md). The sandboxed units cannot tell which namespace is the host's.
adopt_session_records() {
    local host kind record moved=0
    ((LIVE)) || return 0
    host=$(stat -L -c %d-%i /proc/self/ns/net) || return 0
    for kind in openvpn openvpn-pending; do
        for record in "/run/l2tproute/$kind"/*,*; do
            [[ -f $record ]] || continue
            mkdir -p -m 0755 "/run/l2tproute/$kind/$host" && mv -f -- "$record" "/run/l2tproute/$kind/$host/" &&
                moved=$((moved + 1))
        done
    done
    ((moved == 0)) || changed "moved: $moved OpenVPN session records into /run/l2tproute/openvpn/$host (this namespace's)"
}

do_install() {
    check_source
    if [[ $FROM == release ]]; then
        say "Installing the released l2tproute $RELEASE_VERSION${ROOT:+ into the staging root $ROOT}"
    else
        say "Installing l2tproute from $SRC${ROOT:+ into the staging root $ROOT}"
    fi
    install_packages
    choose_panel_users
    prepare
    DIRS_BEFORE=$(cat -- "$DIRS_RECORD" 2>/dev/null || true)
    [[ -z $DIRS_BEFORE ]] || DIRS_BEFORE+=$'\n'
    install_venv
    SYSCTL_CHANGED=0
    install_config
    install_files
    adopt_session_records
    retire_openvpn_connector
    wire_openvpn
    retire_other_scheduler
    install_store
    move_index_out
    record_dirs
    activate
    COMMITTED=1
    if ((CHANGES == 0)); then
        say "Nothing to do: l2tproute is already installed and up to date; nothing was changed."
    else
        say "Done: $CHANGES changes. Route files were not touched."
    fi
    # apply takes over exactly the old tool's kernel routes for stored lines (see l2tproute/core/reconcile.py).
    say_next_apply
    if ((LIVE)) && [[ $SCHEDULER == cron ]]; then
        say "Logs: grep l2tp-routectl /var/log/syslog (pppd hooks and cron runs), or journalctl -t l2tp-routectl."
    elif ((LIVE)); then
        say "Logs: journalctl -t l2tp-routectl (pppd hooks), journalctl -u $SERVICE (timer runs)."
    fi
    return 0
}

# -- uninstall ----------------------------------------------------------------

remove_file() {
    local file=$1 backup=$1$BACKUP_SUFFIX
    if has_marker "$file"; then
        rm -f -- "$file"
        changed "removed: $file"
    elif [[ -e $file || -L $file ]]; then
        say "left alone: $file (not installed by this script)"
    fi
    if [[ -e $backup || -L $backup ]] && [[ ! -e $file && ! -L $file ]]; then
        mv -- "$backup" "$file"
        changed "restored: $file (from $backup)"
        RESTORED+=("$file")
    fi
}

# Deepest first: a directory this script created goes when nothing is left in it, unless
# a package installed since then owns it (a live system's dpkg knows; a staging root has none).
remove_created_dirs() {
    local dir owner
    while IFS= read -r dir; do
        [[ $dir == /?* && $dir != *..* && -d $ROOT$dir && ! -L $ROOT$dir ]] || continue
        [[ $ROOT$dir != "$STORE" && $ROOT$dir != "$STORE_PARENT" ]] || continue  # said above
        if ((LIVE)) && owner=$(dpkg-query -S "$dir" 2>/dev/null); then
            say "kept: $dir (created by this script, now a package's: ${owner%%:*})"
        elif rmdir -- "$ROOT$dir" 2>/dev/null; then
            changed "removed: $ROOT$dir (created by this script, now empty)"
        else
            say "kept: $ROOT$dir (created by this script, but not empty)"
        fi
    done < <(printf '%s\n' "$1" | sort -r)
}

# -- the kernel routes at uninstall --------------------------------------------------
# Ours carry proto 157; once this script is gone nothing would ever remove them, and the
# old tool (when it comes back) cannot add a route over one: its `ip route add` fails on any
# route already there. Those the old tool installs itself (IPv4, table main,
# `DST via GW dev LINK` on a link that carries a peer: what apply adopts, see
# reconcile.old_tool_routes) are handed back to it; every other route of ours is removed.

# Our routes, as `ip -N route show` prints them, one a line (both families, every table).
our_routes() { ip -4 -N route show table all proto 157 2>/dev/null; ip -6 -N route show table all proto 157 2>/dev/null; }

# Of our routes, those the old tool installs itself: DST GW LINK, one a line. (ip leaves out the
# protocol it filters on; a link without carrier adds linkdown.)
old_kind_routes() {
    local links
    links=$(ip -4 -o addr show 2>/dev/null | sed -n 's/^[0-9]*: \([^ ]*\) .* peer .*/\1/p' | sort -u)
    [[ -n $links ]] || return 0
    ip -4 -N route show table main proto 157 2>/dev/null |
        awk -v links="$links" 'BEGIN { n = split(links, l, "\n"); for (i = 1; i <= n; i++) up[l[i]] = 1 }
            function flags_only(i) { for (; i <= NF; i++) if ($i !~ /^(proto|157|linkdown|onlink|dead)$/) return 0; return 1 }
            $2 == "via" && $4 == "dev" && up[$5] && flags_only(6) { print $1, $3, $5 }'
}

remove_our_routes() {
    ip -4 route flush table all proto 157 2>/dev/null || true
    ip -6 route flush table all proto 157 2>/dev/null || true
}

# After the files: the old tool back (its command restored) gets its routes back, else ours stay.
release_routes() {
    local old_service=$1 all handback count back=0 dst gw dev
    ((LIVE)) || return 0
    all=$(our_routes | grep -c . || true)
    ((all > 0)) || return 0
    if [[ ! " ${RESTORED[*]} " == *" $CMD "* ]]; then
        say "left: $all routes tagged proto 157 in the kernel (no old tool comes back to take them); they go" \
            "at the next reboot, or now with: ip route flush table all proto 157; ip -6 route flush table all proto 157"
        return 0
    fi
    handback=$(old_kind_routes)
    count=$(printf '%s' "$handback" | grep -c . || true)
    if ((old_service)); then
        # Its apply runs as its units start: it adds the routes of its lines itself, which it
        # can only do where the kernel has none.
        remove_our_routes
        systemctl enable --quiet "$SERVICE" || true
        if ! timeout 300 systemctl start "$SERVICE"; then
            warn "the old $SERVICE did not finish within 300 s; it puts the routes of its lines back as it goes"
        fi
        while read -r dst gw dev; do
            [[ -n $dst ]] || continue
            ip -4 route show table main proto boot exact "$dst" 2>/dev/null | grep -q " via $gw dev $dev" && back=$((back + 1))
        done <<<"$handback"
        ((count == 0)) || changed "handed back: $back of $count routes to the old tool: removed, then added again" \
            "by its apply just now as it adds them (proto boot, table main; journalctl -u $SERVICE)"
        ((back == count)) || warn "$((count - back)) routes the old tool had are not back in the kernel;" \
            "see journalctl -u $SERVICE"
    else
        while read -r dst gw dev; do
            [[ -n $dst ]] || continue
            ip route replace "$dst" via "$gw" dev "$dev" proto boot 2>/dev/null && back=$((back + 1))
        done <<<"$handback"
        remove_our_routes
        ((count == 0)) || changed "handed back: $back of $count routes to the old tool, as it adds them" \
            "(proto boot, table main; its ip-down removes them when the user disconnects)"
    fi
    ((all == count)) || changed "removed: $((all - count)) routes tagged proto 157 that the old tool never" \
        "installs (IPv6, other tables or metrics, OpenVPN, links without a peer)"
}

do_uninstall() {
    say "Uninstalling l2tproute${ROOT:+ from the staging root $ROOT}"
    local entry dest mode src unit old_service=0
    RESTORED=()
    if systemd_running; then
        for unit in "$TIMER" "$SERVICE" "$WORKER_PATH" "$WORKER_SERVICE"; do
            if has_marker "$UNIT_DIR/$unit"; then
                systemctl disable --quiet --now "$unit" 2>/dev/null || true
            fi
        done
    fi
    for entry in "${FILES[@]}" "${SYSTEMD_FILES[@]}" "${CRON_FILES[@]}"; do
        IFS='|' read -r dest mode src <<<"$entry"
        remove_file "$dest"
    done
    unwire_openvpn
    if systemd_running; then
        systemctl daemon-reload
        [[ " ${RESTORED[*]} " != *" $UNIT_DIR/$SERVICE "* ]] || old_service=1
    fi
    release_routes "$old_service"
    if systemd_running; then
        for unit in "${RESTORED[@]}"; do
            # The old system's units were running: bring back what is restored.
            [[ $unit == "$UNIT_DIR/$TIMER" ]] && systemctl enable --quiet --now "$TIMER" || true
            [[ $unit == "$UNIT_DIR/$SERVICE" ]] && systemctl enable --quiet "$SERVICE" || true
        done
    fi
    local dirs
    dirs=$(cat -- "$DIRS_RECORD" 2>/dev/null || true)
    if ((LIVE)) && [[ -d /run/l2tproute ]]; then
        rm -rf -- /run/l2tproute
        changed "removed: /run/l2tproute (the pppd hooks' spool)"
    fi
    remove_cache_dir
    if [[ -f $FINGERPRINT ]]; then
        rm -rf -- "$VENV"
        changed "removed: $VENV"
    elif [[ -e $VENV ]]; then
        say "left alone: $VENV (not created by this script)"
    fi
    remove_config
    if [[ -d $STORE ]]; then
        # What the tool made beside the route files: its lock, the destination index, and
        # temporaries a killed writer left (the old tool never made any of them).
        local made
        for made in "$STORE/$LOCK_NAME" "$STORE/$INDEX_NAME" "$STORE"/.tmp-*; do
            [[ -f $made && ! -L $made ]] || continue
            rm -f -- "$made"
            changed "removed: $made"
        done
        if [[ -z $(find "$STORE" -mindepth 1 -maxdepth 1 -print -quit) ]]; then
            rmdir -- "$STORE"
            rmdir -- "$STORE_PARENT" 2>/dev/null || true
            changed "removed: $STORE (it was empty)"
        else
            say "kept: $STORE (route files are never removed)"
        fi
    fi
    remove_created_dirs "$dirs"
    COMMITTED=1
    if ((CHANGES == 0)); then
        say "Nothing to uninstall: l2tproute is not installed${ROOT:+ in $ROOT}."
    else
        say "Done: $CHANGES changes. Route files were not touched."
        ((LIVE)) && say "Forwarding and rp_filter keep their current values until the next boot."
    fi
    return 0
}

# -- demo ---------------------------------------------------------------------

DEMO_NS=""
DEMO_DIR=""

demo_cleanup() {
    [[ -z $DEMO_NS ]] || ip netns del "$DEMO_NS" 2>/dev/null || true
    [[ -z $DEMO_DIR ]] || rm -rf -- "$DEMO_DIR"
}

demo_show() {
    printf '\n$ %s\n' "$*"
    "$@" || die "demo: '$*' failed (the installation itself is complete)"
}

demo_routectl() {
    printf '\n$ l2tp-routectl %s\n' "$*"
    # A scratch store: sudo's variables would make l2tp-routectl use the real one.
    env -u SUDO_UID -u SUDO_USER -u SUDO_GID -u SUDO_COMMAND L2TP_ROUTES_DIR="$DEMO_DIR" "$CMD" "$@" ||
        die "demo: 'l2tp-routectl $*' failed (the installation itself is complete)"
}

# pppd's view: the link goes down and comes up again; the installed hooks spool each event
# and return, their worker applies it (scratch spool and store, inside the namespace).
demo_hooks() {
    local peer=$1 dir
    dir=$(mktemp -d "$DEMO_DIR/run.XXXXXX")
    printf '\n$ l2tp-routectl add --peer %s --dst 192.168.30.0/24 --netns %s\n' "$peer" "$DEMO_NS"
    env -u SUDO_UID -u SUDO_USER L2TP_ROUTES_DIR="$DEMO_DIR" "$CMD" add --peer "$peer" --dst 192.168.30.0/24 \
        --netns "$DEMO_NS" >/dev/null || die "demo: add failed (the installation itself is complete)"
    for direction in down up; do
        printf '\n$ /etc/ppp/ip-%s.d/l2tp-routes ppp0 /dev/pts/0 0 10.254.0.1 %s   (as pppd runs it: it returns at once, its worker applies)\n' \
            "$direction" "$peer"
        ip netns exec "$DEMO_NS" env -i L2TP_ROUTES_DIR="$DEMO_DIR" L2TP_RUN_DIR="$dir" \
            "$ROOT/etc/ppp/ip-$direction.d/l2tp-routes" ppp0 /dev/pts/0 0 10.254.0.1 "$peer" "" ||
            die "demo: the ip-$direction hook failed (the installation itself is complete)"
        demo_wait_spool "$dir"
        demo_show ip -n "$DEMO_NS" route show proto 157
    done
    env -u SUDO_UID -u SUDO_USER L2TP_ROUTES_DIR="$DEMO_DIR" "$CMD" del --peer "$peer" --dst all \
        --netns "$DEMO_NS" >/dev/null || die "demo: del failed (the installation itself is complete)"
}

demo_wait_spool() {
    local tries=0
    while [[ -n $(find "$1/spool" -mindepth 1 -print -quit 2>/dev/null) ]] || ! flock -n "$1/worker.lock" true; do
        ((++tries < 200)) || die "demo: the hooks' worker did not finish within 20 s (see journalctl -t l2tp-routectl)"
        sleep 0.1
    done
}

run_demo() {
    DEMO_NS=l2tproute-demo-$$
    DEMO_DIR=$(mktemp -d /tmp/l2tproute-demo.XXXXXX)
    trap 'rc=$?; demo_cleanup; on_exit "$rc"' EXIT
    local peer=10.255.10.2
    say ""
    say "== Demo: scratch network namespace $DEMO_NS with one PPP-like link ppp0 (peer $peer),"
    say "== scratch route store $DEMO_DIR; this system's routes and route files are not touched."
    ip netns add "$DEMO_NS"
    ip -n "$DEMO_NS" link set lo up
    ip -n "$DEMO_NS" tuntap add dev ppp0 mode tun
    ip -n "$DEMO_NS" addr add 10.254.0.1 peer "$peer" dev ppp0
    ip -n "$DEMO_NS" link set ppp0 up
    demo_routectl add --peer "$peer" --dst 192.168.20.0/24 --netns "$DEMO_NS"
    demo_routectl add --peer "$peer" --dst 10.20.0.0/16 --gw "$peer" --netns "$DEMO_NS"
    demo_routectl list
    demo_routectl list --peer "$peer"
    demo_routectl apply --netns "$DEMO_NS"
    demo_show ip -n "$DEMO_NS" route
    demo_routectl del --peer "$peer" --dst 192.168.20.0/24 --netns "$DEMO_NS"
    demo_routectl del --peer "$peer" --dst all --netns "$DEMO_NS"
    demo_show ip -n "$DEMO_NS" route
    demo_routectl list --peer "$peer"
    demo_hooks "$peer"
    demo_cleanup
    DEMO_NS=""
    DEMO_DIR=""
    say ""
    say "== Demo done: namespace and scratch store removed."
}

# -- main ---------------------------------------------------------------------

WORK=$(mktemp -d /tmp/l2tproute-install.XXXXXX)
: >"$WORK/undo"
trap on_exit EXIT
trap 'on_error "$LINENO" "$BASH_COMMAND"' ERR
trap 'exit 130' INT TERM HUP

if [[ $ACTION == uninstall ]]; then
    do_uninstall
else
    do_install
    if ((DEMO)); then run_demo; fi
fi
