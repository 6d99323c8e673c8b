"""Issue #12's targets, each judged from cells measured in one run of `make bench` (put/get and
batch cases): one line per target saying met or not met, with the measured ratio."""

from __future__ import annotations

from ceilings import describe
from common import MiB, num, table

SECTION = "## Issue #12 targets, judged by the same run"

# Cells: ("put" | "get", size, method, "ops" | "mbps") from the put/get table;
# ("batch", size, n, store, form, "ops") and ("batch memory", size, n) (the largest growth of the
# backend's private memory over every form and store) from the batch table.
# ("ceiling", ...) cells are bounds measured by ceilings.py: what any implementation could reach here.
# (what the issue asks; the cell measured; the cell it is divided by, or None for a bound on the
# cell itself; "≥" or "≤"; the bound; the ceiling cell, divided by the same cell, or None)
TARGETS = [
    ("get 1 MiB ≥ 1.0× bytea (file store)", ("get", MiB, "oas-file", "mbps"), ("get", MiB, "bytea", "mbps"), "≥", 1.0,
     ("ceiling", "get", MiB, "mbps")),
    ("get 64 MiB ≥ 1.0× bytea (file store)", ("get", 64 * MiB, "oas-file", "mbps"),
     ("get", 64 * MiB, "bytea", "mbps"), "≥", 1.0, ("ceiling", "get", 64 * MiB, "mbps")),
    ("get 1 MiB ≥ 0.8× DataJoint (file store)", ("get", MiB, "oas-file", "mbps"),
     ("get", MiB, "dj-file", "mbps"), "≥", 0.8, ("ceiling", "get", MiB, "mbps")),
    ("get 64 MiB ≥ 0.8× DataJoint (file store)", ("get", 64 * MiB, "oas-file", "mbps"),
     ("get", 64 * MiB, "dj-file", "mbps"), "≥", 0.8, ("ceiling", "get", 64 * MiB, "mbps")),
    ("put 4 KiB ≥ 1.0× bytea, objects/s (file store)", ("put", 4096, "oas-file", "ops"),
     ("put", 4096, "bytea", "ops"), "≥", 1.0, ("ceiling", "put", 4096, "ops")),
    ("batch 4 KiB × 10,000 on SeaweedFS: one statement ≥ 5× per row", ("batch", 4096, 10_000, "s3", "one", "ops"),
     ("batch", 4096, 10_000, "s3", "per-row", "ops"), "≥", 5.0, None),
    ("batch 1 MiB × 1,000 on SeaweedFS: one statement ≥ 3× per row", ("batch", MiB, 1_000, "s3", "one", "ops"),
     ("batch", MiB, 1_000, "s3", "per-row", "ops"), "≥", 3.0, ("ceiling", "s3 ingest", MiB, 1_000, "ops")),
    ("put 64 MiB on SeaweedFS ≥ 1.0× DataJoint", ("put", 64 * MiB, "oas-s3", "mbps"),
     ("put", 64 * MiB, "dj-s3", "mbps"), "≥", 1.0, ("ceiling", "put", 64 * MiB, "mbps")),
    ("batch memory: peak private memory growth during the 1 GiB batch (1 MiB × 1,000) ≤ 64 MiB",
     ("batch memory", MiB, 1_000), None, "≤", 64.0, None),
]
UNITS = {"mbps": " MB/s", "ops": "/s"}


def cells(puts, gets, batch_rows, ceilings):
    """{cell: (value, note)} from the put/get rows, the batch rows and the ceilings of one run."""
    out = {("ceiling", *key, field): (v, "") for key, d in ceilings.items() for field, v in d.items()}
    for kind, rows in (("put", puts), ("get", gets)):
        for r in rows:
            for field in UNITS:
                out[(kind, r["size"], r["key"], field)] = (r[field], "")
    for r in batch_rows:
        out[("batch", r["size"], r["n"], r["store"], r["form"], "ops")] = (r["ops"], "")
        mem = ("batch memory", r["size"], r["n"])
        if r["growth"] is not None and r["growth"] >= out.get(mem, (-1,))[0]:
            out[mem] = (r["growth"], f"{r['store']}, {r['form']}")
    return out


def measured(found, mine, against):
    """The measured value of a target and how it is shown, or None when a cell was not run."""
    if mine not in found or (against is not None and against not in found):
        return None
    (a, note) = found[mine]
    if against is None:
        return a, f"{num(a)} MiB" + (f" ({note})" if note else "")
    b = found[against][0]
    unit = UNITS[mine[-1]]
    return a / b, f"{num(a / b, '×')} ({num(a)} / {num(b)}{unit})"


def elsewhere(found, mine, against):
    """For a batch target not run at its size (e.g. --quick): the same ratio at the size that was."""
    if mine[0] not in ("batch", "batch memory"):
        return ""
    for key in found:
        if key[0] == mine[0] and key[1] == mine[1] and key[3:] == mine[3:] and key[2] != mine[2]:
            alt = measured(found, key, against and against[:2] + (key[2],) + against[3:])
            if alt:
                return f" (this run: {key[2]:,} objects, {alt[1]})"
    return ""


def report(puts, gets, batch_rows, ceilings, header):
    found = cells(puts, gets, batch_rows, ceilings)
    ceilings_text = describe(ceilings)
    rows = []
    for i, (what, mine, against, op, bound, ceiling) in enumerate(TARGETS, 1):
        m = measured(found, mine, against)
        need = f"{op} {num(bound, '×' if against else ' MiB')}"
        c = measured(found, ceiling, against) if ceiling else None
        reach = "—" if c is None else c[1] + (" (target above it)" if c[0] < bound else "")
        if m is None:
            rows.append([str(i), what, "—", need, reach, "not measured" + elsewhere(found, mine, against)])
        else:
            ok = m[0] >= bound if op == "≥" else m[0] <= bound
            rows.append([str(i), what, m[1], need, reach, "**met**" if ok else "**not met**"])
    legend = ("The ceiling is what any implementation could reach on this machine in the same run "
              "(bench/ceilings.py says how each is measured): a target above it is out of reach here.")
    return "\n".join([SECTION, "", header, "", table(["#", "target", "measured", "needed", "ceiling here", "result"],
                                                    rows, text_cols=6), "", legend, "",
                      ceilings_text]) + "\n"
