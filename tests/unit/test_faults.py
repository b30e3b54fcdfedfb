"""CPU exceptions in the payload become Linux's signals (kontain.monitor.faults)."""

from __future__ import annotations

from kontain.linux.abi import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_READ, PROT_WRITE
from kontain.mm.space import DEMAND_BACKED_MIN, DEMAND_CHUNK
from kontain.monitor import signals as sig
from kontain.monitor.faults import PF_PROTECTION, PF_USER, PF_WRITE, signal_for

ANON = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED
CODE = 0x40_0000


def test_divide_error_is_sigfpe_at_rip(mm):
    assert signal_for(0, 0, 0x401234, 0, mm) == (sig.SIGFPE, sig.FPE_INTDIV, 0x401234)


def test_page_fault_outside_any_mapping_is_maperr(mm):
    assert signal_for(14, PF_WRITE, CODE, 0x1000, mm) == (sig.SIGSEGV, sig.SEGV_MAPERR, 0x1000)


def test_page_fault_against_the_protection_is_accerr(mm):
    mm.mmap(0x5000_0000, 4096, PROT_READ, ANON)
    verdict = signal_for(14, PF_PROTECTION | PF_WRITE, CODE, 0x5000_0010, mm)
    assert verdict == (sig.SIGSEGV, sig.SEGV_ACCERR, 0x5000_0010)


def test_an_access_the_mappings_allow_is_retried_a_few_times(mm):
    mm.mmap(0x5000_0000, 4096, PROT_READ | PROT_WRITE, ANON)
    assert signal_for(14, PF_WRITE, CODE, 0x5000_0010, mm, repeats=1) is None
    assert signal_for(14, PF_WRITE, CODE, 0x5000_0010, mm, repeats=3) is None
    assert signal_for(14, PF_WRITE, CODE, 0x5000_0010, mm, repeats=4)[0] == sig.SIGSEGV


def test_unbacked_host_pages_are_sigbus(mm):
    mm.unbacked = frozenset({0x6000_0000})
    assert signal_for(14, 0, CODE, 0x6000_0008, mm) == (sig.SIGBUS, sig.BUS_ADRERR, 0x6000_0008)


def test_int_n_is_what_linux_makes_of_it(mm):
    mm.mmap(CODE, 4096, PROT_READ | PROT_WRITE, ANON)
    mm.write(CODE, b"\xcd\x80\xcd\x03\x0f\x0b")  # int $0x80; int $3; ud2
    assert signal_for(6, 0, CODE, 0, mm)[0] == sig.SIGSEGV  # #GP through a ring-0 gate
    assert signal_for(6, 0, CODE + 2, 0, mm)[0] == sig.SIGTRAP
    assert signal_for(6, 0, CODE + 4, 0, mm) == (sig.SIGILL, sig.ILL_ILLOPN, CODE + 4)


def test_the_first_touch_of_a_demand_backed_mapping_backs_it(mm):
    base = 0x10_0000_0000
    mm.mmap(base, DEMAND_BACKED_MIN, PROT_READ | PROT_WRITE, ANON)
    assert mm.find(base).pa is None
    address = base + 5 * DEMAND_CHUNK + 123
    assert signal_for(14, PF_WRITE | PF_USER, CODE, address, mm) is None
    backed = mm.find(address)
    assert backed.pa is not None
    assert (backed.start, backed.end) == (base + 5 * DEMAND_CHUNK, base + 6 * DEMAND_CHUNK)
    assert mm.find(base).pa is None  # the rest stays unbacked
    mm.write(address, b"x")  # and is ordinary memory now
    assert mm.read(address, 1) == b"x"


def test_a_read_only_demand_backed_mapping_refuses_a_write(mm):
    base = 0x10_0000_0000
    mm.mmap(base, DEMAND_BACKED_MIN, PROT_READ, ANON)
    assert signal_for(14, PF_WRITE | PF_USER, CODE, base, mm)[:2] == (sig.SIGSEGV,
                                                                     sig.SEGV_ACCERR)
    assert signal_for(14, PF_USER, CODE, base, mm) is None
    assert mm.read(base, 4) == b"\0\0\0\0"
