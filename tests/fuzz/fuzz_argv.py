"""atheris target: the command line, in-process, on any argv.

    ip netns exec SCRATCH env L2TP_ROUTES_DIR=DIR python3 tests/fuzz/fuzz_argv.py -max_total_time=60

Run it inside a scratch network namespace and with a scratch store (test_fuzz.py
does): commands that pass validation really run. `--netns` is never generated, so
no other namespace is reached.

Properties: the exit status is 0, 1 or 2; on failure stderr is exactly one
`l2tp-routectl: error:` line, printable and short; nothing but warnings otherwise;
never an internal error; a usage error (2) changes no file in the store.
"""

import io
import os
import sys

import atheris

with atheris.instrument_imports(include=["l2tproute"]):
    from l2tproute.core import constants as C
    from l2tproute.fronts import cli

STORE = os.environ[C.STORE_DIR_ENV]
WORDS = ["add", "del", "list", "apply", "status", "--peer", "--dst", "--gw", "--dev", "--metric", "--table",
         "--json", "--dry-run", "--force", "--user", "all", "10.255.10.2", "10.255.10.3", "10.9.0.0/24",
         "2001:db8::/48", "192.168.1.5/24", "0.0.0.0/0", "ppp0", "100", "main", "--peer=", "--dst=", "--", "=",
         "010.1.1.1", "10.255.10.2\n", "a b", "\x00", "../x", "/etc/passwd"]


def argv_from(data: bytes):
    fdp = atheris.FuzzedDataProvider(data)
    argv = []
    for _ in range(fdp.ConsumeIntInRange(0, 8)):
        if fdp.ConsumeBool():
            argv.append(WORDS[fdp.ConsumeIntInRange(0, len(WORDS) - 1)])
        else:
            argv.append(fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 24)))
    return argv


def snapshot():
    found = {}
    for name in os.listdir(STORE):
        path = os.path.join(STORE, name)
        found[name] = None
        if os.path.isfile(path) and not os.path.islink(path):
            with open(path, "rb") as handle:
                found[name] = handle.read()
    return found


def TestOneInput(data: bytes) -> None:
    argv = argv_from(data)
    if any(word.startswith("--n") or word in ("-h", "--help", "--version") or word.startswith("--install")
           or word.startswith("--show") for word in argv):
        return  # another namespace, or help/completion text: nothing to learn
    before = snapshot()
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace")
    err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace")
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        code = cli.run(list(argv))
    finally:
        sys.stdout, sys.stderr = saved
    err.flush()
    text = err.buffer.getvalue().decode("utf-8", "replace")
    lines = text.splitlines()
    errors = [line for line in lines if line.startswith(f"{C.PROG}: error: ")]
    if code not in (0, 1, 2):
        raise AssertionError(f"{argv!r}: exit {code}")
    if "internal error" in text or "Traceback" in text:
        raise AssertionError(f"{argv!r}: {text}")
    if any(not (line.startswith(f"{C.PROG}: error: ") or line.startswith(f"{C.PROG}: warning: ")) for line in lines):
        raise AssertionError(f"{argv!r}: stray stderr {text!r}")
    if code != 0 and (len(errors) != 1 or not errors[0].isprintable() or len(errors[0]) > 600):
        raise AssertionError(f"{argv!r}: exit {code} with {text!r}")
    if code == 2 and snapshot() != before:
        raise AssertionError(f"{argv!r}: a usage error changed the store")


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
