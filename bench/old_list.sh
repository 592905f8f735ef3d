#!/bin/bash
# Baseline for the panel's calls: the work the old bash tool did for `list --peer IP`
# (check the address with a bash regex, print the header, cat the file) and for `list`.
ROUTES_DIR=/etc/l2tp-manager/routes.d

if [[ $1 == list && $# -eq 1 ]]; then
    shopt -s nullglob
    files=("$ROUTES_DIR"/*.routes)
    if ((${#files[@]} == 0)); then
        echo "No routes found"
        exit 0
    fi
    echo "All routes:"
    for file in "${files[@]}"; do
        peer=$(basename "$file" .routes)
        echo "Peer: $peer"
        cat "$file"
        echo
    done
    exit 0
fi
if [[ $1 != list || $2 != --peer ]]; then
    echo "usage: $0 list [--peer IP]" >&2
    exit 1
fi
PEER=$3
if [[ ! $PEER =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]]; then
    echo "Error: invalid peer IP: $PEER" >&2
    exit 1
fi
FILE="$ROUTES_DIR/$PEER.routes"
if [[ -f $FILE ]]; then
    echo "Routes for peer $PEER:"
    cat "$FILE"
else
    echo "No routes found for peer: $PEER"
fi
