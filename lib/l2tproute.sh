# l2tproute's POSIX sh helpers, sourced by the sh fronts (l2tp-routectl, l2tp-routes-event,
# l2tp-routes-kick, l2tp-routes-openvpn).
# Installed as /opt/l2tproute/libexec/l2tproute.sh. The rules are the library's
# (model.parse_peer, store.store_dir_from_environment); tests hold the two together.

# A peer as model.parse_peer accepts it: a canonical unicast dotted quad
# (no leading zeros, each part 0-255; not 0/8, 127/8, 224/4 or 240/4).
l2t_is_peer() {
    case $1 in "" | *[!0-9.]* | .* | *. | *..*) return 1 ;; esac
    l2t_rest=$1 l2t_first=
    for l2t_n in 1 2 3 4; do
        l2t_octet=${l2t_rest%%.*}
        if [ "$l2t_n" -lt 4 ]; then
            [ "$l2t_octet" != "$l2t_rest" ] || return 1
            l2t_rest=${l2t_rest#*.}
        else
            [ "$l2t_octet" = "$l2t_rest" ] || return 1
        fi
        case $l2t_octet in "" | 0?* | ????*) return 1 ;; esac
        [ "$l2t_octet" -le 255 ] || return 1
        [ -n "$l2t_first" ] || l2t_first=$l2t_octet
    done
    [ "$l2t_first" -ne 0 ] && [ "$l2t_first" -ne 127 ] && [ "$l2t_first" -lt 224 ]
}

# A link name as model.parse_device accepts it.
l2t_is_device() {
    case $1 in "" | . | .. | *[!A-Za-z0-9_.+@-]*) return 1 ;; esac
    [ ${#1} -le 15 ]
}

# Sets l2t_dir to the directory in variable $1 (tests move it) or else to $2; under sudo
# always $2, as the caller's environment must not move what root reads.
l2t_pick_dir() {
    eval "l2t_dir=\${$1:-}"
    if [ -z "$l2t_dir" ] || [ -n "${SUDO_UID:-}${SUDO_USER:-}" ]; then l2t_dir=$2; fi
}

# Sets l2t_mode_N, l2t_uid_N and l2t_size_N (N = 1, 2, ...) to the mode, owner and size of
# each path given, in order, from one `ls` (sh has no builtin for them). False unless ls
# described each path on one line (a name with a newline in it is not taken).
l2t_stat() {
    l2t_long=$(LC_ALL=C ls -ldnU -- "$@" 2>/dev/null) || return 1
    l2t_i=0
    while read -r l2t_m l2t_n l2t_u l2t_g l2t_s l2t_rest; do
        l2t_i=$((l2t_i + 1))
        eval "l2t_mode_$l2t_i=\$l2t_m l2t_uid_$l2t_i=\$l2t_u l2t_size_$l2t_i=\$l2t_s"
    done <<EOF
$l2t_long
EOF
    [ "$l2t_i" -eq $# ]
}

# Calls $3 with each line of file $1 (of size $2 by l2t_stat, at most 64 KiB), the last one
# also when it has no newline; false as soon as $3 is. The shell reads the lines itself (the
# panel runs this twice per row, and a process costs a millisecond): the bytes read summing
# to the size proves that none was dropped (a NUL) or counted into a wider character.
l2t_each_line() {
    [ "$2" -le 65536 ] || return 1
    l2t_bytes=0
    while l2t_eol=1 && IFS= read -r l2t_line || { l2t_eol=0 && [ -n "$l2t_line" ]; }; do
        l2t_bytes=$((l2t_bytes + ${#l2t_line} + l2t_eol))
        "$3" "$l2t_line" || return 1
    done <"$1" || return 1
    [ "$l2t_bytes" -eq "$2" ]
}

# Sets l2t_text to file $1 of size $2 as the Python CLI prints it: as it is, with a final
# newline where it has none. False where l2t_each_line cannot vouch for every byte.
l2t_read_text() {
    l2t_text=
    l2t_each_line "$1" "$2" l2t_add_line
}

l2t_add_line() {
    l2t_text="$l2t_text$1
"
}

# True when the settings file $1, with mode $2, owner $3 and size $4 by l2t_stat, is one
# policy.load_config reads without an error: a regular file (no link) owned by root and
# writable by root only, at most 64 KiB, of ASCII lines that are blank, a # comment or a
# key = value policy.parse_config takes, each key once. Conservative: whatever this cannot
# vouch for goes to the Python CLI, which says what is wrong with it.
l2t_settings_plain() {
    [ -f "$1" ] && [ ! -h "$1" ] && [ -r "$1" ] || return 1
    case $2 in ?????w* | ????????w*) return 1 ;; esac
    [ "$3" = 0 ] || return 1
    l2t_keys=" "
    l2t_each_line "$1" "$4" l2t_setting_line
}

# True when line $1 of the settings file is one policy.parse_config takes (see above); keys
# already seen are in l2t_keys.
l2t_setting_line() {
    case $1 in *[!\	\ -~]*) return 1 ;; esac
    l2t_l=${1#"${1%%[!	 ]*}"}
    l2t_l=${l2t_l%"${l2t_l##*[!	 ]}"}
    case $l2t_l in "" | "#"*) return 0 ;; *=*) ;; *) return 1 ;; esac
    l2t_key=${l2t_l%%=*}
    l2t_key=${l2t_key%"${l2t_key##*[!	 ]}"}
    l2t_value=${l2t_l#*=}
    l2t_value=${l2t_value#"${l2t_value%%[!	 ]*}"}
    case $l2t_keys in *" $l2t_key "*) return 1 ;; esac
    l2t_keys="$l2t_keys$l2t_key "
    case $l2t_key in
    panel_users)
        # shellcheck disable=SC2086  # split into the names, without globbing
        set -f && l2t_ifs=$IFS && IFS=' 	,' && set -- $l2t_value && IFS=$l2t_ifs && set +f
        l2t_users=0
        for l2t_user; do  # an empty field (two commas) is no name, as in parse_config
            case $l2t_user in "") continue ;; [!A-Za-z_]* | *[!A-Za-z0-9_.-]*) return 1 ;; esac
            [ ${#l2t_user} -le 32 ] || return 1
            l2t_users=$((l2t_users + 1))
        done
        [ "$l2t_users" -ge 1 ]
        ;;
    min_prefix | min_prefix6)
        case $l2t_value in [0-9] | [0-9][0-9] | [0-9][0-9][0-9]) ;; *) return 1 ;; esac
        l2t_top=32
        [ "$l2t_key" = min_prefix ] || l2t_top=128
        [ "$l2t_value" -ge 1 ] && [ "$l2t_value" -le "$l2t_top" ]
        ;;
    *) return 1 ;;
    esac
}

# True when systemd's l2tproute-worker.path starts the worker for the spool under $1 (it
# watches only the real spool, and only where systemd runs).
l2t_worker_by_systemd() {
    [ "$1" = /run/l2tproute ] && [ -d /run/systemd/system ] && [ -e /etc/systemd/system/l2tproute-worker.path ]
}

# True when the worker that holds the lock under $1 runs: $1/worker.running names it by PID
# and start time, written by the subshell below as it took the lock (exec makes it the
# worker, same PID and start time) and by the worker on each pass, and removed by the worker
# before it lets go of the lock and looks at the spool once more
# (l2tproute/fronts/worker.py). An event spooled while that file names a live process is
# seen by that look, so the caller starts nobody, and runs no flock: a fork and a process,
# a quarter of a hook's CPU in a reconnect storm. A dead or another process, or garbage:
# false, and flock decides as before.
l2t_worker_running() {
    read -r l2t_wpid l2t_wstart 2>/dev/null <"$1/worker.running" || return 1
    case $l2t_wpid in "" | *[!0-9]*) return 1 ;; esac
    l2t_proc_stat "$l2t_wpid" && [ "$l2t_pid $l2t_start" = "$l2t_wpid $l2t_wstart" ] || return 1
    # A worker that died is a zombie until reaped (by a PID 1 that may take its time).
    case $l2t_state in Z | X | x) return 1 ;; esac
}

# Starts the hooks' worker $2 for the spool under $1 in the background, unless one runs
# (it holds the lock and looks at the spool again before it exits) or systemd starts it.
# The worker gets no descriptor of the caller, so nobody waiting for the caller's output
# (a pipe to logger, sudo, OpenVPN) waits for the worker.
l2t_start_worker() {
    ! l2t_worker_by_systemd "$1" || return 0
    ! l2t_worker_running "$1" || return 0
    (
        exec 9>>"$1/worker.lock" && flock -n 9 || exit 0
        ! l2t_proc_stat self || echo "$l2t_pid $l2t_start" >|"$1/worker.running"
        exec "$2" --lock-fd 9
    ) </dev/null >/dev/null 2>&1 &
}

# Sets l2t_netns to this process's network namespace as the spool names it, DEV-INO of its
# nsfs file (l2tproute/system/netns.py); empty when it cannot be read. Reading it takes a
# stat process (sh has no builtin for an inode), a third of a hook's time; so in PID 1's
# namespace, where pppd runs on nearly every server, the answer is kept in $1/host-netns
# (the run directory, when given) for this boot and this PID 1, and `test -ef`, a builtin,
# tells each later hook it is in that same namespace.
l2t_get_netns() {
    l2t_netns=
    l2t_host=
    if [ -n "${1:-}" ] && [ /proc/self/ns/net -ef /proc/1/ns/net ] && l2t_boot_mark; then
        l2t_host=$l2t_mark
        if read -r l2t_seen_boot l2t_seen_start l2t_seen_id <"$1/host-netns" 2>/dev/null &&
            [ "$l2t_seen_boot $l2t_seen_start" = "$l2t_host" ] && l2t_is_netns "$l2t_seen_id"; then
            l2t_netns=$l2t_seen_id
            return 0
        fi
    fi
    l2t_netns=$(stat -L -c %d-%i /proc/self/ns/net 2>/dev/null) || l2t_netns=
    l2t_is_netns "$l2t_netns" || l2t_netns=
    # Written whole under a name of its own, then renamed: a reader sees all of it or nothing.
    if [ -n "$l2t_host" ] && [ -n "$l2t_netns" ] && [ -d "$1" ]; then
        { echo "$l2t_host $l2t_netns" >"$1/host-netns.$$" && mv -f "$1/host-netns.$$" "$1/host-netns"; } 2>/dev/null ||
            rm -f "$1/host-netns.$$" 2>/dev/null || :
    fi
}

# True when $1 is DEV-INO as l2t_get_netns writes it.
l2t_is_netns() {
    case $1 in "" | *[!0-9-]* | -* | *- | *-*-* | [!0-9]*) return 1 ;; *-*) return 0 ;; esac
    return 1
}

# Sets l2t_mark to what names this boot and this PID 1 (the kernel's boot id, PID 1's start
# time): a namespace remembered under another mark is not this PID 1's. Builtins only.
l2t_boot_mark() {
    l2t_mark=
    read -r l2t_boot </proc/sys/kernel/random/boot_id 2>/dev/null || return 1
    case $l2t_boot in "" | *[!0-9a-f-]*) return 1 ;; esac
    l2t_proc_stat 1 || return 1
    l2t_mark="$l2t_boot $l2t_start"
}

# Sets l2t_pid, l2t_state and l2t_start to the PID, the state letter and the start time
# (clock ticks after boot) of process $1, a PID or `self` (whoever reads it: a builtin here
# reads for this very process), from /proc/$1/stat. Builtins only.
l2t_proc_stat() {
    l2t_pid= l2t_state= l2t_start=
    read -r l2t_stat 2>/dev/null <"/proc/$1/stat" || return 1
    l2t_pid=${l2t_stat%% *}
    # The fields after the command name (which may hold spaces): the start time is the 20th.
    l2t_stat=${l2t_stat##*) }
    # shellcheck disable=SC2086  # split into the fields of /proc/PID/stat
    set -- $l2t_stat
    [ $# -ge 20 ] || return 1
    l2t_state=$1
    eval "l2t_start=\${20}"
    case $l2t_pid in "" | *[!0-9]*) return 1 ;; esac
    case $l2t_start in "" | *[!0-9]*) return 1 ;; esac
}

# Sets l2t_name to the spool name of one event: NETNS,IFACE,SEQ,KIND and the kind's fields
# (spool.event_name is the same grammar in Python; tests/unit/test_spool_grammar.py holds them together).
l2t_event_name() {
    l2t_name=$1,$2,$3,$4
    shift 4
    for l2t_field in "$@"; do l2t_name=$l2t_name,$l2t_field; done
}

# The file name of user name $1 in the OpenVPN precompute (iroutes.user_file_name): bytes
# A-Z a-z 0-9 _ @ + - kept, every other byte %XX (upper-case hex). Sets l2t_name; false when
# $1 is empty or the name would be longer than 255 bytes. No fork for printable ASCII (what
# OpenVPN passes: it turns other bytes of a name into _); any other byte costs one printf.
l2t_user_name() {
    l2t_name= l2t_rest=$1
    [ -n "$l2t_rest" ] || return 1
    case $l2t_rest in *[!A-Za-z0-9_@+-]*) ;; *)
        l2t_name=$l2t_rest
        [ ${#l2t_name} -le 255 ]
        return
        ;;
    esac
    while [ -n "$l2t_rest" ]; do
        l2t_rest2=${l2t_rest#?}
        l2t_c=${l2t_rest%"$l2t_rest2"}
        l2t_rest=$l2t_rest2
        case $l2t_c in
        [A-Za-z0-9_@+-]) l2t_name=$l2t_name$l2t_c; continue ;;
        ' ') l2t_x=20 ;; '!') l2t_x=21 ;; '"') l2t_x=22 ;; '#') l2t_x=23 ;; '$') l2t_x=24 ;;
        '%') l2t_x=25 ;; '&') l2t_x=26 ;; "'") l2t_x=27 ;; '(') l2t_x=28 ;; ')') l2t_x=29 ;;
        '*') l2t_x=2A ;; ',') l2t_x=2C ;; '.') l2t_x=2E ;; '/') l2t_x=2F ;; ':') l2t_x=3A ;;
        ';') l2t_x=3B ;; '<') l2t_x=3C ;; '=') l2t_x=3D ;; '>') l2t_x=3E ;; '?') l2t_x=3F ;;
        '[') l2t_x=5B ;; '\') l2t_x=5C ;; ']') l2t_x=5D ;; '^') l2t_x=5E ;; '`') l2t_x=60 ;;
        '{') l2t_x=7B ;; '|') l2t_x=7C ;; '}') l2t_x=7D ;; '~') l2t_x=7E ;;
        *) l2t_x=$(printf '%02X' "'$l2t_c") ;;
        esac
        l2t_name=$l2t_name%$l2t_x
    done
    [ ${#l2t_name} -le 255 ]
}
