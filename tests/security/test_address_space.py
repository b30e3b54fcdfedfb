"""The payload's address space holds nothing of km: a scan of the whole lower half finds
only the payload's own mappings (its ELF, stack, heap, vDSO/vvar, what it mapped itself),
each of them listed in /proc/self/maps as the payload sees it, and no byte of km: no
"kontain", no "python", no host path of the root, no variable of km's environment that
the payload was not given. The kernel half is not readable either (natively nothing is;
km keeps its GDT, IDT, TSS and stub there), and the vDSO's pages read as natively.

tests/security/payloads/scan.c does the scan (see there how); the same scan in a native
chroot (with a procfs mounted, for /proc/self/maps) is the control that the scan itself
is sound.
"""

from __future__ import annotations

import re
import secrets

from .conftest import BASE_ENV, FLAVOUR

#: Names a mapping of the payload may have in /proc/self/maps.
SPECIAL = {"[stack]", "[heap]", "[vdso]", "[vvar]", "[vvar_vclock]"}


def parse(out: str):
    regions, maps, own, hits, other = [], [], {}, [], []
    for line in out.splitlines():
        if m := re.fullmatch(r"region (0x[0-9a-f]+)-(0x[0-9a-f]+)", line):
            regions.append((int(m[1], 16), int(m[2], 16)))
        elif m := re.fullmatch(r"maps ([0-9a-f]+)-([0-9a-f]+) (\S+)(?: +\S+){3}\s*(.*)", line):
            maps.append((int(m[1], 16), int(m[2], 16), m[3], m[4].strip()))
        elif m := re.fullmatch(r"own (\w+) (0x[0-9a-f]+)(?:-0x[0-9a-f]+)?", line):
            own[m[1]] = int(m[2], 16)
        elif line.startswith("hit "):
            hits.append(line)
        else:
            other.append(line)
    return regions, maps, own, hits, other


def address_space_problems(out: str, needles: list[str]) -> list[str]:
    regions, maps, own, hits, other = parse(out)
    problems = []
    if not regions or not maps:
        problems.append("no scan or no /proc/self/maps: " + "; ".join(other[:5]))
    lower_maps = [m for m in maps if m[0] < 1 << 47]
    # Everything found is listed in maps: nothing mapped behind the payload's back.
    for lo, hi in regions:
        addr = lo
        for mlo, mhi, _, _ in sorted(lower_maps):
            if mlo <= addr < mhi:
                addr = mhi
        if addr < hi:
            problems.append(f"mapped but not in /proc/self/maps: {addr:#x}-{hi:#x} "
                            f"(in the range {lo:#x}-{hi:#x} the scan found)")
    # Every mapping is the payload's: its ELF, a special one, or anonymous memory that
    # holds something of the payload's, or lies between its ELF and the program break
    # (the rest of .bss, and the heap, which km does not name [heap]).
    text = own.get("text", 0)
    elf = [mlo for mlo, mhi, _, _ in lower_maps if mlo <= text < mhi]
    heap = (elf[0], own["brk"]) if elf and "brk" in own else (0, 0)
    for mlo, mhi, perms, name in lower_maps:
        if name in ("/prog", *SPECIAL):
            continue
        if name == "" and (heap[0] <= mlo and mhi <= heap[1]
                           or any(mlo <= a < mhi for a in own.values())):
            continue
        problems.append(f"a mapping that is not the payload's: {mlo:#x}-{mhi:#x} {perms} "
                        f"{name or '(anonymous)'}")
    for what, addr in own.items():
        if what != "brk" and not any(lo <= addr < hi for lo, hi in regions):
            problems.append(f"the scan missed the payload's own {what} at {addr:#x}")
    for hit in hits:
        index = int(hit.split()[1])
        problems.append(f"{hit}: {needles[index]!r} is in the payload's memory")
    summary = next((line for line in other if line.startswith("summary")), "")
    if not summary.endswith(" 0 pages neither mapped nor free"):
        problems.append(f"the scan did not finish cleanly: {summary or other[-3:]}")
    return problems


def test_scan_of_the_lower_half_finds_only_the_payload(sandbox, escape_payloads):
    payload = escape_payloads.build("scan", FLAVOUR)
    native_root, km_root = sandbox.pair(payload)
    marker = f"km-only-{secrets.token_hex(8)}"  # in km's environment, not the payload's

    def needles(root) -> list[str]:
        return ["kontain", "python", "site-packages", str(root), marker]

    def argv(root) -> list[str]:
        return ["lower", *(n[::-1] for n in needles(root))]  # reversed: argv lacks them

    native = sandbox.native(native_root, *argv(native_root), proc=True,
                            env={"PATH": "/bin", "GIVEN": "1"})
    control = address_space_problems(native.out, needles(native_root))
    assert native.returncode == 0 and not control, "\n".join([*control, native.out])
    # km gets a variable the payload does not (-e gives the payload its own environment);
    # the payload's /proc/self/maps is the one km synthesizes (no procfs in the root).
    under_km = sandbox.km(km_root, *argv(km_root), env=dict(BASE_ENV, KM_ONLY=marker),
                          options=("-e", "PATH=/bin", "-e", "GIVEN=1"))
    problems = address_space_problems(under_km.out, needles(km_root))
    if under_km.returncode != 0:
        problems.append(f"the scan ended with status {under_km.returncode}")
    sandbox.check(under_km, *problems)


def test_kernel_half_and_vdso_pages_read_as_natively(sandbox, escape_payloads):
    """Nothing in the kernel half is readable (km's stub, GDT, IDT); the [vvar],
    [vvar_vclock] and [vdso] pages read, or fault, page by page, as natively - a fault
    the payload catches, not the end of km."""
    payload = escape_payloads.build("scan", FLAVOUR)
    native_root, km_root = sandbox.pair(payload)
    native = sandbox.native(native_root, "upper", proc=True)
    under_km = sandbox.km(km_root, "upper")
    # One documented difference: on PVM hosts `syscall` enters km's ring-0 stub without
    # leaving CPL 3, so the stub's page (its entry code, nothing else: two instructions
    # per entry) must be user-executable, hence readable (docs/ARCHITECTURE.md, "The
    # syscall path"). Every other page of the kernel half stays unreadable.
    stub_line = "pages readable at 0xffffff8000000000 (64 probed): "
    if stub_line + "1\n" in under_km.out and stub_line + "0\n" in native.out:
        under_km.stdout = under_km.stdout.replace((stub_line + "1").encode(),
                                                  (stub_line + "0").encode())
    sandbox.check_same(native, under_km, compare_roots=False)
