"""The x86-64 signal frame, as Linux lays it out: built for a handler, read back by
rt_sigreturn. Pure: no vCPU, no guest memory (tests/unit/test_sigframe.py).

Linux's struct rt_sigframe (arch/x86/include/asm/sigframe.h), from the frame's address
up: the return address (sa_restorer), a struct ucontext (flags, link, the alternate
stack, then uc_mcontext: struct sigcontext with every general register, the segment
selectors, err/trapno/oldmask/cr2 and a pointer to the FP state; then the signal mask),
and a siginfo_t. Above the frame, 64-byte aligned, the XSAVE image with the
_fpx_sw_bytes in its software-reserved area and FP_XSTATE_MAGIC2 after it
(arch/x86/include/uapi/asm/sigcontext.h). glibc, musl and Go handlers parse exactly
this, and rt_sigreturn restores from it.
"""

from __future__ import annotations

import struct

SIGINFO_SIZE = 128
#: struct sigcontext (x86-64): r8..r15, rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip,
#: eflags, cs/gs/fs/ss, err, trapno, oldmask, cr2, fpstate, reserved[8].
SIGCONTEXT = struct.Struct("<18QHHHHQQQQQ64x")
GREG_ORDER = ("r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rdi", "rsi", "rbp",
              "rbx", "rdx", "rax", "rcx", "rsp", "rip", "rflags")
UCONTEXT_HEAD = struct.Struct("<QQQi4xQ")  # uc_flags, uc_link, ss_sp, ss_flags, ss_size
UC_FP_XSTATE, UC_SIGCONTEXT_SS, UC_STRICT_RESTORE_SS = 1, 2, 4
SS_ONSTACK, SS_DISABLE, SS_AUTODISARM = 1, 2, 1 << 31
FP_XSTATE_MAGIC1, FP_XSTATE_MAGIC2 = 0x46505853, 0x46505845
SW_BYTES_OFFSET = 464  # struct _fpx_sw_bytes sits in the fxsave area's software-reserved bytes
SW_BYTES = struct.Struct("<IIQI")  # magic1, extended_size, xfeatures, xstate_size
UCONTEXT_SIZE = UCONTEXT_HEAD.size + SIGCONTEXT.size + 8
RT_SIGFRAME_SIZE = 8 + UCONTEXT_SIZE + SIGINFO_SIZE
OFFSET_UCONTEXT = 8
OFFSET_SIGCONTEXT = OFFSET_UCONTEXT + UCONTEXT_HEAD.size
OFFSET_SIGMASK = OFFSET_SIGCONTEXT + SIGCONTEXT.size
OFFSET_SIGINFO = 8 + UCONTEXT_SIZE
#: The x86-64 ABI's red zone below rsp, which a handler's frame must not touch.
RED_ZONE = 128
USER_CS, USER_SS = 0x33, 0x2B
MIN_ALTSTACK = 2048  # MINSIGSTKSZ


class Frame:
    """A frame ready to be written: the FP state at fp_address, the rest at address."""

    __slots__ = ("address", "image", "fp_address", "fpstate")

    def __init__(self, address: int, image: bytes, fp_address: int, fpstate: bytes) -> None:
        self.address, self.image = address, image
        self.fp_address, self.fpstate = fp_address, fpstate

    @property
    def siginfo(self) -> int:
        return self.address + OFFSET_SIGINFO

    @property
    def ucontext(self) -> int:
        return self.address + OFFSET_UCONTEXT


def fpstate_with_sw_bytes(xsave: bytes, xfeatures: int) -> bytes:
    """The XSAVE image as Linux stores it in a signal frame (sw bytes + MAGIC2)."""
    size = len(xsave)
    image = bytearray(xsave)
    image[SW_BYTES_OFFSET:SW_BYTES_OFFSET + SW_BYTES.size] = SW_BYTES.pack(
        FP_XSTATE_MAGIC1, size + 4, xfeatures, size)
    return bytes(image) + struct.pack("<I", FP_XSTATE_MAGIC2)


def build(registers: dict[str, int], mask: int, info: bytes, restorer: int,
          altstack: tuple[int, int, int], use_altstack: bool, xsave: bytes, xfeatures: int,
          fault: tuple[int, int, int] = (0, 0, 0)) -> Frame:
    """The frame for a handler interrupting the context `registers` (GREG_ORDER's names;
    rip, rsp and rflags where the payload resumes). mask: the mask to restore on return;
    altstack: (sp, flags, size); use_altstack: the action asks for it (SA_ONSTACK);
    fault: (error code, trap number, cr2) of the exception that raised it, if one did."""
    rsp = registers["rsp"]
    alt_sp, alt_flags, alt_size = altstack
    if alt_flags & SS_DISABLE:
        alt_size = 0
    on_altstack = bool(alt_size) and alt_sp <= rsp < alt_sp + alt_size
    if use_altstack and alt_size and not on_altstack:
        sp = alt_sp + alt_size
    else:
        sp = rsp - RED_ZONE
    fpstate = fpstate_with_sw_bytes(xsave, xfeatures)
    fp_address = (sp - len(fpstate)) & ~63
    address = ((fp_address - RT_SIGFRAME_SIZE) & ~15) - 8  # as after a call: rsp % 16 == 8
    error_code, trapno, cr2 = fault
    sigcontext = SIGCONTEXT.pack(*(registers[name] for name in GREG_ORDER), USER_CS, 0, 0,
                                 USER_SS, error_code, trapno, mask, cr2, fp_address)
    ss_flags = (SS_ONSTACK if on_altstack else 0) if alt_size else SS_DISABLE
    ss_flags |= alt_flags & SS_AUTODISARM  # (what sigreturn arms again)
    head = UCONTEXT_HEAD.pack(UC_FP_XSTATE | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS, 0,
                              alt_sp, ss_flags, alt_size)
    image = struct.pack("<Q", restorer) + head + sigcontext + struct.pack("<Q", mask) + info
    return Frame(address, image, fp_address, fpstate)


class Saved:
    """What rt_sigreturn restores, read from a frame."""

    __slots__ = ("registers", "fp_address", "mask", "altstack")

    def __init__(self, registers: dict[str, int], fp_address: int, mask: int,
                 altstack: tuple[int, int, int] | None) -> None:
        self.registers, self.fp_address, self.mask = registers, fp_address, mask
        #: The alternate stack the frame names, if it is a usable one.
        self.altstack = altstack


#: How many bytes of a frame (from its ucontext) parse() needs.
SAVED_SIZE = UCONTEXT_HEAD.size + SIGCONTEXT.size + 8


def parse(ucontext: bytes) -> Saved:
    """The context saved in a frame, from its struct ucontext (SAVED_SIZE bytes)."""
    _flags, _link, ss_sp, ss_flags, ss_size = UCONTEXT_HEAD.unpack_from(ucontext)
    ss_flags &= 0xFFFFFFFF
    values = SIGCONTEXT.unpack_from(ucontext, UCONTEXT_HEAD.size)
    mask, = struct.unpack_from("<Q", ucontext, UCONTEXT_HEAD.size + SIGCONTEXT.size)
    registers = dict(zip(GREG_ORDER, values[:18], strict=True))
    usable = not ss_flags & SS_DISABLE and ss_size >= MIN_ALTSTACK
    altstack = (ss_sp, ss_flags & SS_AUTODISARM, ss_size) if usable else None
    return Saved(registers, values[-1], mask, altstack)
