"""ELF mutants: valid executables with their headers bent, each run under ``km --root``.

Seeds are tests/payloads/hello.c built three ways (musl static, glibc static, glibc
static-pie) and a dynamic executable (/bin/true, with its loader and libc copied into the
root). A mutant applies one to three mutations: a header or program-header field set to
an edge value (offsets and sizes past the file or past 2^63, addresses in the kernel
half or wrapping past 2^64, phentsize/phnum lies), truncation, random byte flips,
overlapping or reordered segments, no PT_LOAD at all, and PT_INTERP made odd (a NUL
inside, no NUL, huge, pointing at the mutant itself, a directory, a text file, or
several of them).

km must either refuse the file (126/127 and one line ``km: ...``) or run it and let it
live or die as Linux would; never a traceback, an internal error or a hang. A mutant
that hangs under km is run natively too: if it hangs there as well (say its entry point
now lands in a loop), that is the program's doing, not km's.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

from fuzz import common
from fuzz.common import Failure, Problem, Run

EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
PHDR = struct.Struct("<IIQQQQQQ")
PT_LOAD, PT_DYNAMIC, PT_INTERP, PT_NOTE, PT_PHDR, PT_TLS = 1, 2, 3, 4, 6, 7
PT_GNU_STACK, PT_GNU_RELRO = 0x6474E551, 0x6474E552
KERNEL_BASE = 0xFFFFFF8000000000  # where km maps its own GDT, IDT, TSS and stub

EDGE = [0, 1, 7, 0x40, 0xFFF, 0x1000, 0x1001, 0x400000, 0x7FFFFFFFE000, 0x7FFFFFFFFFFF,
        1 << 47, 0xFFFF800000000000, KERNEL_BASE, KERNEL_BASE + 0x1000, 0xFFFFFFFFFF600000,
        (1 << 63) - 1, 1 << 63, (1 << 63) + 0x1000, (1 << 64) - 1, (1 << 64) - 0x1000,
        1 << 32, (1 << 32) - 1, 1 << 40, 0x7FFFFFFF, 0x80000000]
EDGE16 = [0, 1, 2, 55, 56, 57, 64, 112, 0x7FFF, 0xFFFF, 0xFFFE]
INTERP_TARGETS = [b"/lib64/ld-linux-x86-64.so.2", b"/mutant", b"/dir", b"/", b"/notelf",
                  b"/nope", b"", b"mutant", b"..", b"/lib64/ld-linux-x86-64.so.2/x",
                  b"/proc/self/exe", b"/dir/"]
LOADER = Path("/lib64/ld-linux-x86-64.so.2")
LIBC = Path("/lib/x86_64-linux-gnu/libc.so.6")


@dataclass
class Seed:
    name: str
    data: bytes
    dynamic: bool


def hello_binary(flavour: str) -> Path:
    """tests/payloads/hello.c, built like the tests build it."""
    flags = {"musl": ("-static", "-O2"), "glibc": ("-static", "-O2"),
             "glibc-pie": ("-static-pie", "-O2", "-fPIE")}[flavour]
    compiler = "musl-gcc" if flavour == "musl" else "gcc"
    return common.build(common.REPO / "tests" / "payloads" / "hello.c", compiler, flags,
                        f"hello-{flavour}")


def seeds() -> list[Seed]:
    found = [Seed(f"hello-{f}", hello_binary(f).read_bytes(), False)
             for f in ("musl", "glibc", "glibc-pie")]
    true = shutil.which("true")
    if true and LOADER.exists() and LIBC.exists():
        found.append(Seed("true-dynamic", Path(true).read_bytes(), True))
    return found


# --------------------------------------------------------------------------------------
# Mutations: each takes the file and a Random, changes the file, says what it did.


class Elf:
    def __init__(self, data: bytes) -> None:
        self.data = bytearray(data)

    def header(self) -> list:
        return list(EHDR.unpack_from(self.data, 0))

    def set_header(self, fields: list) -> None:
        EHDR.pack_into(self.data, 0, *fields)

    def phdr_offsets(self) -> list[int]:
        h = self.header()
        phoff, phentsize, phnum = h[5], h[9], h[10]
        if phentsize != PHDR.size or phoff > len(self.data):
            return []
        return [o for o in (phoff + i * PHDR.size for i in range(phnum))
                if o + PHDR.size <= len(self.data)]

    def phdr(self, offset: int) -> list:
        return list(PHDR.unpack_from(self.data, offset))

    def set_phdr(self, offset: int, fields: list) -> None:
        PHDR.pack_into(self.data, offset, *fields)


HEADER_FIELDS = {"e_type": 1, "e_version": 3, "e_entry": 4, "e_phoff": 5, "e_shoff": 6,
                 "e_flags": 7, "e_ehsize": 8, "e_phentsize": 9, "e_phnum": 10,
                 "e_shentsize": 11, "e_shnum": 12, "e_shstrndx": 13}
PHDR_FIELDS = ["p_type", "p_flags", "p_offset", "p_vaddr", "p_paddr", "p_filesz",
               "p_memsz", "p_align"]
SIZES = {"e_type": 16, "e_version": 32, "e_flags": 32, "e_ehsize": 16, "e_phentsize": 16,
         "e_phnum": 16, "e_shentsize": 16, "e_shnum": 16, "e_shstrndx": 16, "p_type": 32,
         "p_flags": 32}


def _value(rng: random.Random, bits: int, current: int, size: int) -> int:
    if bits == 16:
        choices = EDGE16 + [current + 1, current - 1, rng.getrandbits(16)]
    elif bits == 32:
        choices = [0, 1, 7, 0x80000000, 0xFFFFFFFF, rng.getrandbits(32), current ^ 1,
                   PT_LOAD, PT_INTERP, PT_DYNAMIC, PT_TLS, PT_PHDR, PT_GNU_STACK, 0x60000000]
    else:
        choices = EDGE + [size, size - 1, size + 0x1000, current + 1, current - 0x1000,
                          current + (1 << 63), (1 << 64) - current, rng.getrandbits(64),
                          current ^ (1 << rng.randrange(64))]
    return rng.choice(choices) % (1 << bits)


def mutate_header(elf: Elf, rng: random.Random) -> str:
    name = rng.choice(list(HEADER_FIELDS))
    fields = elf.header()
    old = fields[HEADER_FIELDS[name]]
    fields[HEADER_FIELDS[name]] = _value(rng, SIZES.get(name, 64), old, len(elf.data))
    elf.set_header(fields)
    return f"{name} {old:#x} -> {fields[HEADER_FIELDS[name]]:#x}"


def mutate_ident(elf: Elf, rng: random.Random) -> str:
    index = rng.randrange(4, 16)
    old = elf.data[index]
    elf.data[index] = rng.choice([0, 1, 2, 3, 0xFF, old ^ 1])
    return f"e_ident[{index}] {old:#x} -> {elf.data[index]:#x}"


def mutate_phdr(elf: Elf, rng: random.Random) -> str:
    offsets = elf.phdr_offsets()
    if not offsets:
        return mutate_header(elf, rng)
    index = rng.randrange(len(offsets))
    fields = elf.phdr(offsets[index])
    field = rng.randrange(8)
    if rng.random() < 0.3:  # prefer the PT_LOADs: that is where mapping bugs live
        loads = [i for i, o in enumerate(offsets) if elf.phdr(o)[0] == PT_LOAD]
        if loads:
            index = rng.choice(loads)
            fields = elf.phdr(offsets[index])
            field = rng.choice([2, 3, 5, 6, 7])
    old = fields[field]
    name = PHDR_FIELDS[field]
    if field == 3 and rng.random() < 0.3:  # wrap: vaddr + memsz goes past 2^64
        fields[3] = ((1 << 64) - fields[6] // 2 - 0x1000) % (1 << 64)
    else:
        fields[field] = _value(rng, SIZES.get(name, 64), old, len(elf.data))
    elf.set_phdr(offsets[index], fields)
    return f"phdr[{index}].{name} {old:#x} -> {fields[field]:#x}"


def truncate(elf: Elf, rng: random.Random) -> str:
    h = elf.header()
    points = [rng.randrange(1, 64), h[5] + rng.randrange(0, 56 * max(h[10], 1) + 1),
              rng.randrange(len(elf.data)), len(elf.data) - rng.randrange(1, 4096)]
    cut = max(0, min(len(elf.data), rng.choice(points)))
    del elf.data[cut:]
    return f"truncated to {cut} bytes"


def flip_bytes(elf: Elf, rng: random.Random) -> str:
    span = min(len(elf.data), rng.choice([64, 512, 4096]))
    if not span:
        return "nothing to flip"
    places = sorted(rng.randrange(span) for _ in range(rng.randint(1, 8)))
    for place in places:
        elf.data[place] = rng.randrange(256)
    return f"random bytes at {places}"


def overlap_segments(elf: Elf, rng: random.Random) -> str:
    offsets = elf.phdr_offsets()
    loads = [o for o in offsets if elf.phdr(o)[0] == PT_LOAD]
    others = [o for o in offsets if o not in loads]
    if not loads or not offsets:
        return mutate_phdr(elf, rng)
    source = rng.choice(loads)
    target = rng.choice(others or offsets)
    fields = elf.phdr(source)
    fields[3] += rng.choice([0, 0x1000, -0x1000, 0x10]) % (1 << 64)
    fields[3] %= 1 << 64
    fields[1] = rng.choice([fields[1], 7, 0])
    elf.set_phdr(target, fields)
    return f"phdr at {target:#x} = copy of PT_LOAD at {source:#x}, vaddr {fields[3]:#x}"


def swap_segments(elf: Elf, rng: random.Random) -> str:
    offsets = elf.phdr_offsets()
    if len(offsets) < 2:
        return truncate(elf, rng)
    a, b = rng.sample(offsets, 2)
    first, second = elf.phdr(a), elf.phdr(b)
    elf.set_phdr(a, second)
    elf.set_phdr(b, first)
    return f"swapped program headers at {a:#x} and {b:#x}"


def no_loads(elf: Elf, rng: random.Random) -> str:
    replacement = rng.choice([0, PT_NOTE, PT_GNU_STACK])
    for offset in elf.phdr_offsets():
        fields = elf.phdr(offset)
        if fields[0] == PT_LOAD:
            fields[0] = replacement
            elf.set_phdr(offset, fields)
    return f"every PT_LOAD turned into type {replacement:#x}"


def odd_interp(elf: Elf, rng: random.Random) -> str:
    """A PT_INTERP (new or existing) naming something odd, in an odd way."""
    offsets = elf.phdr_offsets()
    if not offsets:
        return mutate_header(elf, rng)
    interps = [o for o in offsets if elf.phdr(o)[0] == PT_INTERP]
    spare = [o for o in offsets if elf.phdr(o)[0] in (PT_NOTE, PT_GNU_STACK, PT_GNU_RELRO, 0)]
    target = rng.choice(interps or spare or offsets)
    name = rng.choice(INTERP_TARGETS)
    how = rng.choice(["nul", "no-nul", "nul-inside", "huge", "past-eof", "offset-2^63",
                      "empty", "long"])
    text = name + b"\0"
    if how == "no-nul":
        text = name
    elif how == "nul-inside":
        cut = rng.randrange(len(name) + 1)
        text = name[:cut] + b"\0" + name[cut:] + b"\0"
    elif how == "long":
        text = b"/" + b"a" * rng.choice([255, 256, 4095, 4096, 70000]) + b"\0"
    elif how == "empty":
        text = b""
    offset = len(elf.data)
    elf.data += text
    size = len(text)
    if how == "huge":
        size = rng.choice([1 << 20, 1 << 31, 1 << 40, (1 << 63) + 5, (1 << 64) - 1])
    elif how == "past-eof":
        size += rng.choice([1, 4096, 1 << 20])
    if how == "offset-2^63":
        offset = 1 << 63
    fields = elf.phdr(target)
    fields[0], fields[2], fields[5], fields[6] = PT_INTERP, offset, size, size
    elf.set_phdr(target, fields)
    extra = ""
    if len(offsets) > 1 and rng.random() < 0.3:  # and a second PT_INTERP
        second = rng.choice([o for o in offsets if o != target])
        elf.set_phdr(second, fields)
        extra = ", twice"
    return f"PT_INTERP {name!r} ({how}, filesz {size:#x}, offset {offset:#x}){extra}"


MUTATIONS = [mutate_header, mutate_header, mutate_ident, mutate_phdr, mutate_phdr,
             mutate_phdr, truncate, flip_bytes, overlap_segments, swap_segments, no_loads,
             odd_interp, odd_interp]


def mutate(seed: Seed, rng: random.Random) -> tuple[bytes, str]:
    elf = Elf(seed.data)
    done = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        if len(elf.data) < EHDR.size:
            break
        done.append(rng.choice(MUTATIONS)(elf, rng))
    return bytes(elf.data), f"{seed.name}: " + "; ".join(done)


# --------------------------------------------------------------------------------------
# Running a mutant


def _copies(mutant: Path, dynamic_libs: bool) -> list[tuple[Path, str]]:
    copies = [(mutant, "mutant"), (common.FUZZ_DIR / "__init__.py", "notelf"),
              (common.FUZZ_DIR / "__init__.py", "dir/x")]
    if dynamic_libs:
        copies += [(LOADER, str(LOADER).lstrip("/")), (LIBC, str(LIBC).lstrip("/"))]
    return copies


def run_mutant(data: bytes, timeout: float, native: bool = False) -> Run:
    """km --root ROOT /mutant (or, native=True, the mutant itself) in the sandbox."""
    root = common.scratch_dir("elf-")
    mutant = root.with_name(root.name + ".bin")
    try:
        mutant.write_bytes(data)
        mutant.chmod(0o755)
        copies = _copies(mutant, LOADER.exists() and LIBC.exists())
        common.prepare_root(root, copies)
        if native:
            argv = [str(root / "mutant")]
        else:
            argv = [*common.km_command(), "--mem-size", "1G", "-V=exit", "--root", str(root),
                    "/mutant"]
        return common.run(common.in_sandbox(root, copies, argv), timeout)
    finally:
        mutant.unlink(missing_ok=True)
        common.remove_dir(root)


def judge(result: Run) -> list[Problem]:
    problems = common.km_problems(result, "ELF mutant")
    km_lines = common.km_error_lines(result.output)
    if km_lines and not problems:
        if result.status not in (126, 127):
            problems.append(Problem(f"km error with status {result.status}: "
                                    f"{common.normalize(km_lines[0])}", km_lines[0]))
        elif len(km_lines) > 1:
            problems.append(Problem("more than one km error line", "\n".join(km_lines)))
    return problems


def check_result(data: bytes, description: str, result: Run, timeout: float
                 ) -> list[Failure]:
    """The failures in one mutant's run under km (each mutant kept for reproduction)."""
    problems = judge(result)
    if result.timed_out and run_mutant(data, timeout, native=True).timed_out:
        # It hangs natively too: the mutation made a program that never ends.
        problems = [p for p in problems if not p.signature.startswith("hang")]
    failures = []
    for problem in problems:
        digest = hashlib.sha256(data).hexdigest()[:12]
        kept = common.save_failure(f"elf-{digest}.bin", data,
                                   f"{description}\n{problem.signature}\n"
                                   f"{result.output.decode(errors='replace')[-4000:]}")
        failures.append(Failure(
            "elf", problem.signature, problem.detail,
            f"mkdir r && cp {kept} r/mutant && chmod +x r/mutant && km --root r /mutant"
            f"   # {description}", [str(kept)]))
    return failures
