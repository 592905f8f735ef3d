"""atheris target: the route file parser, on any bytes.

    python3 tests/fuzz/fuzz_routefile.py -max_total_time=60 [CORPUS_DIR ...]

Properties: parsing never raises; the lines serialize back to the exact input; a
route read from a line writes back to a clean line that reads as the same route;
every warning is one printable line.
"""

import sys

import atheris

with atheris.instrument_imports(include=["l2tproute"]):
    from l2tproute.core.routefile import ROUTE, format_route, parse, parse_line, problems, serialize


def TestOneInput(data: bytes) -> None:
    lines = parse(data)
    if serialize(lines) != data:
        raise AssertionError(f"not byte for byte: {data!r}")
    for line in lines:
        if line.route is None:
            continue
        clean = format_route(line.route).encode("ascii") + b"\n"
        again = parse_line(clean)
        if again.kind != ROUTE or again.route != line.route:
            raise AssertionError(f"{line.raw!r} -> {clean!r} -> {again}")
    for text in problems(lines, "/etc/l2tp-manager/routes.d/10.255.10.2.routes"):
        if not text.isprintable() or len(text) > 1000:
            raise AssertionError(f"warning is not one short printable line: {text[:200]!r}")


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
