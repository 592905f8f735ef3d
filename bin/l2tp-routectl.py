#!/usr/bin/env python3
"""l2tp-routectl: per-user static routes for L2TP/PPP servers.

Installed as /opt/l2tproute/libexec/l2tp-routectl by install-l2tp-per-user-routing.sh, which
points the first line at the venv's interpreter started isolated and without `site`
(`python3 -IS`: the PYTHON* variables and the current directory are ignored, which
matters under sudo; no `site` saves a good part of the start) and adds exactly the
venv's site-packages to sys.path on the next lines.
"""

from l2tproute.fronts.entry import main

if __name__ == "__main__":
    main()
