"""What a CPU exception in the payload becomes: the signal Linux sends for it, or a retry.

Linux's policy (arch/x86/kernel/traps.c, arch/x86/mm/fault.c), on the facts km has: the
vector, the error code, the faulting rip and (page faults) cr2, and the payload's
mappings. Pure: tests/unit/test_faults.py tries every rule without a VM.
"""

from __future__ import annotations

from kontain.linux.abi import PROT_EXEC, PROT_READ, PROT_WRITE
from kontain.mm.access import GuestFault, GuestMemory
from kontain.monitor import signals as sig

#: What each vector becomes when it reaches user code: (signal, si_code, whether si_addr
#: is the faulting rip).
EXCEPTION_SIGNALS = {
    0: (sig.SIGFPE, sig.FPE_INTDIV, True), 1: (sig.SIGTRAP, sig.TRAP_TRACE, True),
    3: (sig.SIGTRAP, sig.SI_KERNEL, False), 4: (sig.SIGSEGV, sig.SI_KERNEL, False),
    5: (sig.SIGSEGV, sig.SI_KERNEL, False), 6: (sig.SIGILL, sig.ILL_ILLOPN, True),
    7: (sig.SIGFPE, sig.FPE_FLTINV, True), 10: (sig.SIGSEGV, sig.SI_KERNEL, False),
    11: (sig.SIGBUS, sig.SI_KERNEL, False), 12: (sig.SIGBUS, sig.SI_KERNEL, False),
    13: (sig.SIGSEGV, sig.SI_KERNEL, False), 16: (sig.SIGFPE, sig.FPE_FLTINV, True),
    17: (sig.SIGBUS, sig.BUS_ADRALN, True), 19: (sig.SIGFPE, sig.FPE_FLTINV, True),
}
PAGE_FAULT, INVALID_OPCODE, GENERAL_PROTECTION, BREAKPOINT = 14, 6, 13, 3
PF_PROTECTION, PF_WRITE, PF_USER, PF_FETCH = 1, 2, 4, 16
#: A page fault at one address is retried this often (a stale translation) before it
#: is believed.
SPURIOUS_RETRIES = 3


def signal_for(vector: int, error_code: int, rip: int, cr2: int, memory: GuestMemory,
               repeats: int = 1) -> tuple[int, int, int] | None:
    """(signal, si_code, si_addr) for an exception in the payload, or None when the
    faulting access is to be made again. repeats: how many page faults in a row hit cr2.
    """
    if vector == PAGE_FAULT:
        return _page_fault(error_code, cr2, memory, repeats)
    if vector == INVALID_OPCODE:
        # `int $N`: PVM reports it as #UD. Linux's IDT lets user code reach int3's
        # gate only (SIGTRAP); any other is #GP through a ring-0 gate, SIGSEGV.
        n = int_operand(rip, memory)
        if n is not None:
            vector = BREAKPOINT if n == 3 else GENERAL_PROTECTION
    signo, code, at_rip = EXCEPTION_SIGNALS.get(vector, (sig.SIGSEGV, sig.SI_KERNEL, False))
    return signo, code, rip if at_rip else 0


def _page_fault(error_code: int, cr2: int, memory: GuestMemory,
                repeats: int) -> tuple[int, int, int] | None:
    write, fetch = bool(error_code & PF_WRITE), bool(error_code & PF_FETCH)
    vma = memory.find(cr2)
    if vma is not None and vma.pa is None and not error_code & PF_PROTECTION \
            and memory.populate(cr2, 1, write):
        return None  # the first touch of a demand-backed mapping: backed now, retry
    if vma is not None and vma.pa is not None and not error_code & PF_PROTECTION \
            and memory.fill_slot(cr2):
        return None  # the first touch of a 2 MiB slot: mapped now, retry
    if repeats <= SPURIOUS_RETRIES and memory.access_allowed(cr2, write, fetch):
        # The mappings allow it: a stale translation (km widened a page since it was
        # cached). Make the access again, as Linux does for spurious faults.
        return None
    if cr2 & ~0xFFF in memory.unbacked:  # host memory with nothing behind it
        return sig.SIGBUS, sig.BUS_ADRERR, cr2
    if vma is not None and vma.held_pa is not None \
            and vma.prot & (PROT_WRITE if write else PROT_EXEC if fetch else PROT_READ):
        return sig.SIGBUS, sig.BUS_ADRERR, cr2  # a file mapping past the end of its file
    code = sig.SEGV_ACCERR if memory.find(cr2) is not None else sig.SEGV_MAPERR
    return sig.SIGSEGV, code, cr2


def int_operand(rip: int, memory: GuestMemory) -> int | None:
    """N if the instruction at rip is `int $N` (CD ib), else None."""
    try:
        code = memory.read(rip, 2)
    except GuestFault:
        return None
    return code[1] if code[0] == 0xCD else None
