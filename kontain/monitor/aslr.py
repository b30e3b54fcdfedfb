"""Address-space layout randomisation: where a new program's stack, mmap area, PIE image,
heap and vDSO go, chosen as Linux x86-64 chooses them at execve.

Linux (arch/x86/mm/mmap.c, fs/binfmt_elf.c, mm/util.c) moves, when
kernel.randomize_va_space is 1 or more and the personality lacks ADDR_NO_RANDOMIZE:

- the stack top down by up to 16 GiB (22 bits of pages), and the initial stack pointer
  by up to 8 KiB more below the argument strings;
- the top of the mmap area (the interpreter, libraries, anonymous mappings, the vDSO
  here) down by mmap_rnd_bits (28 by default) bits of pages, below a gap that leaves the
  stack room for its own randomisation;
- a PIE's load address up by another mmap_rnd_bits bits of pages;
- with randomize_va_space 2, the heap start (brk) up by up to 1 GiB.

km's guest page tables take any address, so each of these is just a number: the same
entropy as Linux's, from the host's random source.
"""

from __future__ import annotations

import os

from kontain.machine.layout import MMAP_TOP, PAGE_SIZE, PIE_BASE, STACK_TOP, VDSO_VA

#: personality(2) flag: this program (and what it execs) is laid out without randomness.
ADDR_NO_RANDOMIZE = 0x0040000
STACK_RND_PAGES_BITS = 22
#: The mmap area stays below the furthest the stack top may move.
STACK_MAX_RANDOM = (1 << STACK_RND_PAGES_BITS) * PAGE_SIZE
BRK_RANDOM_RANGE = 1 << 30  # arch_randomize_brk: 1 GiB for 64-bit programs
STACK_POINTER_RANDOM = 8192

_host_settings: list[tuple[int, int]] = []


def host_settings() -> tuple[int, int]:
    """(kernel.randomize_va_space, vm.mmap_rnd_bits) of the host, read once."""
    if not _host_settings:
        _host_settings.append((_read_int("/proc/sys/kernel/randomize_va_space", 2),
                               _read_int("/proc/sys/vm/mmap_rnd_bits", 28)))
    return _host_settings[0]


def _read_int(path: str, default: int) -> int:
    try:
        with open(path, "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        return default


class Layout:
    """Where one program image's regions go."""

    __slots__ = ("stack_top", "mmap_top", "pie_base", "brk_offset", "stack_pad")

    def __init__(self, stack_top: int = STACK_TOP, mmap_top: int = MMAP_TOP,
                 pie_base: int = PIE_BASE, brk_offset: int = 0, stack_pad: int = 0) -> None:
        self.stack_top = stack_top
        #: Top of the top-down mmap area; the vDSO sits in the gap above it.
        self.mmap_top = mmap_top
        self.pie_base = pie_base
        #: How far above the end of the program the heap starts.
        self.brk_offset = brk_offset
        #: Bytes left free below the argument strings before the initial stack pointer.
        self.stack_pad = stack_pad

    @property
    def vdso_base(self) -> int:
        """Where the vDSO goes: in the gap above the mmap area, as far above its top as
        in the fixed layout."""
        return self.mmap_top + VDSO_VA - MMAP_TOP


def choose(personality: int) -> Layout:
    """The layout for a program started now with this personality."""
    level, mmap_bits = host_settings()
    if level == 0 or personality & ADDR_NO_RANDOMIZE:
        return Layout()
    random = int.from_bytes(os.urandom(16), "little")

    def take(bits: int) -> int:
        nonlocal random
        value = random & ((1 << bits) - 1)
        random >>= bits
        return value

    stack_top = STACK_TOP - take(STACK_RND_PAGES_BITS) * PAGE_SIZE
    mmap_top = MMAP_TOP - STACK_MAX_RANDOM - take(mmap_bits) * PAGE_SIZE
    pie_base = PIE_BASE + take(mmap_bits) * PAGE_SIZE
    brk_offset = take(18) * PAGE_SIZE if level >= 2 else 0
    stack_pad = take(13) % STACK_POINTER_RANDOM
    return Layout(stack_top, mmap_top, pie_base, brk_offset, stack_pad)
