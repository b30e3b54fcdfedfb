"""The initial process stack: argc, argv, envp and the auxiliary vector.

Layout as Linux's create_elf_tables() builds it (fs/binfmt_elf.c), from high addresses
down: the argument and environment strings and the exec file name, the platform string
and AT_RANDOM's 16 bytes, then (16-byte aligned, at the final rsp) argc, the argv
pointers, NULL, the envp pointers, NULL, and the (type, value) auxv pairs ending in AT_NULL.
"""

from __future__ import annotations

import struct

AT_NULL, AT_PHDR, AT_PHENT, AT_PHNUM, AT_PAGESZ, AT_BASE, AT_FLAGS, AT_ENTRY = (
    0, 3, 4, 5, 6, 7, 8, 9)
AT_UID, AT_EUID, AT_GID, AT_EGID, AT_PLATFORM, AT_HWCAP, AT_CLKTCK = 11, 12, 13, 14, 15, 16, 17
AT_SECURE, AT_RANDOM, AT_HWCAP2, AT_EXECFN, AT_SYSINFO_EHDR, AT_MINSIGSTKSZ = (
    23, 25, 26, 31, 33, 51)

PLATFORM = b"x86_64"


def build_initial_stack(top: int, argv: list[bytes], envp: list[bytes], execfn: bytes,
                        auxv: list[tuple[int, int]], random16: bytes,
                        pad: int = 0) -> tuple[int, bytes]:
    """The stack contents for a fresh process whose stack ends at top.

    auxv holds every entry except AT_RANDOM, AT_PLATFORM and AT_EXECFN, which point into
    the stack and are added here. pad: bytes left free below the strings (Linux's
    arch_align_stack randomisation). Returns (rsp, bytes to write at rsp).
    """
    strings = bytearray()
    offsets: list[int] = []
    for s in argv + envp + [execfn]:
        offsets.append(len(strings))
        strings += s + b"\0"
    strings_base = top - 8 - len(strings)  # Linux keeps the last word of the stack NULL
    pointers = [strings_base + off for off in offsets]
    argv_ptrs, envp_ptrs, execfn_ptr = (pointers[:len(argv)],
                                        pointers[len(argv):len(argv) + len(envp)], pointers[-1])
    platform_ptr = (strings_base - pad - len(PLATFORM) - 1) & ~0xF
    random_ptr = platform_ptr - 16
    auxv = list(auxv) + [(AT_RANDOM, random_ptr), (AT_PLATFORM, platform_ptr),
                         (AT_EXECFN, execfn_ptr), (AT_NULL, 0)]
    words = [len(argv), *argv_ptrs, 0, *envp_ptrs, 0]
    for key, value in auxv:
        words += [key, value & 0xFFFF_FFFF_FFFF_FFFF]  # (as the kernel's unsigned longs)
    rsp = (random_ptr - 8 * len(words)) & ~0xF
    image = bytearray(top - rsp)
    struct.pack_into(f"<{len(words)}Q", image, 0, *words)
    image[random_ptr - rsp:random_ptr - rsp + 16] = random16
    image[platform_ptr - rsp:platform_ptr - rsp + len(PLATFORM)] = PLATFORM
    image[strings_base - rsp:strings_base - rsp + len(strings)] = strings
    return rsp, bytes(image)


def host_auxv() -> dict[int, int]:
    """km's own auxiliary vector, as the host kernel gave it.

    The payload gets the host's values for what describes the machine (AT_HWCAP,
    AT_HWCAP2, AT_MINSIGSTKSZ, AT_CLKTCK): native Linux is the reference.
    """
    try:
        with open("/proc/self/auxv", "rb") as f:
            raw = f.read()
    except OSError:
        return {}
    values = struct.unpack(f"<{len(raw) // 8}Q", raw[:len(raw) // 8 * 8])
    return {values[i]: values[i + 1] for i in range(0, len(values) - 1, 2) if values[i]}
