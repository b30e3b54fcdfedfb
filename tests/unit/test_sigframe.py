"""The x86-64 signal frame (kontain.monitor.sigframe): laid out as Linux does, read back
exactly; no VM needed."""

from __future__ import annotations

import struct

from kontain.monitor import sigframe as sf

REGISTERS = {name: 0x1000 + i for i, name in enumerate(sf.GREG_ORDER)}
XSAVE = bytes(range(256)) * 3  # 768 bytes: any image; the sw bytes are placed inside


def frame_for(rsp: int, **kwargs) -> sf.Frame:
    registers = dict(REGISTERS, rsp=rsp)
    args = dict(mask=0x5, info=b"I" * sf.SIGINFO_SIZE, restorer=0x401000,
                altstack=(0, sf.SS_DISABLE, 0), use_altstack=False, xsave=XSAVE, xfeatures=7)
    args.update(kwargs)
    return sf.build(registers, **args)


def test_layout_matches_linux():
    # Sizes from arch/x86/include: sigcontext 256 bytes, ucontext head 40, rt_sigframe
    # (pretcode + ucontext + siginfo) 8 + 304 + 128.
    assert sf.SIGCONTEXT.size == 256 and sf.UCONTEXT_HEAD.size == 40
    assert sf.RT_SIGFRAME_SIZE == 440 and sf.OFFSET_SIGINFO == 312


def test_frame_sits_below_the_red_zone_aligned_like_a_call():
    frame = frame_for(0x7FFF_0000_1000)
    assert frame.fp_address + len(frame.fpstate) <= 0x7FFF_0000_1000 - sf.RED_ZONE
    assert frame.fp_address % 64 == 0
    assert frame.address % 16 == 8 and frame.address + sf.RT_SIGFRAME_SIZE <= frame.fp_address
    assert struct.unpack_from("<Q", frame.image)[0] == 0x401000  # returns to sa_restorer
    assert frame.image[sf.OFFSET_SIGINFO:] == b"I" * sf.SIGINFO_SIZE


def test_fp_state_carries_the_sw_bytes_and_magic():
    frame = frame_for(0x7FFF_0000_1000)
    magic1, extended, xfeatures, size = sf.SW_BYTES.unpack_from(frame.fpstate,
                                                                sf.SW_BYTES_OFFSET)
    assert (magic1, xfeatures, size) == (sf.FP_XSTATE_MAGIC1, 7, len(XSAVE))
    assert extended == len(XSAVE) + 4 == len(frame.fpstate)
    assert struct.unpack_from("<I", frame.fpstate, len(XSAVE))[0] == sf.FP_XSTATE_MAGIC2


def test_alternate_stack_is_used_when_asked_and_not_already_on_it():
    altstack = (0x5000_0000, 0, 0x10000)
    on = frame_for(0x7FFF_0000_1000, altstack=altstack, use_altstack=True)
    assert 0x5000_0000 <= on.address < 0x5001_0000
    off = frame_for(0x7FFF_0000_1000, altstack=altstack, use_altstack=False)
    assert off.address > 0x7000_0000_0000
    nested = frame_for(0x5000_8000, altstack=altstack, use_altstack=True)  # already on it
    assert nested.address < 0x5000_8000 - sf.RED_ZONE


def test_rt_sigreturn_reads_back_what_was_saved():
    frame = frame_for(0x7FFF_0000_1000, mask=0xABC, fault=(4, 14, 0xDEAD000),
                      altstack=(0x5000_0000, 0, 0x10000))
    ucontext = frame.image[sf.OFFSET_UCONTEXT:sf.OFFSET_UCONTEXT + sf.SAVED_SIZE]
    saved = sf.parse(ucontext)
    assert saved.registers == dict(REGISTERS, rsp=0x7FFF_0000_1000)
    assert saved.mask == 0xABC and saved.fp_address == frame.fp_address
    assert saved.altstack == (0x5000_0000, 0, 0x10000)
    err, trapno, oldmask, cr2 = struct.unpack_from(
        "<QQQQ", frame.image, sf.OFFSET_SIGCONTEXT + 18 * 8 + 8)
    assert (err, trapno, oldmask, cr2) == (4, 14, 0xABC, 0xDEAD000)


def test_a_disabled_or_tiny_alternate_stack_is_not_restored():
    for altstack in ((0x5000_0000, sf.SS_DISABLE, 0x10000), (0x5000_0000, 0, 100)):
        frame = frame_for(0x7FFF_0000_1000, altstack=altstack)
        ucontext = frame.image[sf.OFFSET_UCONTEXT:sf.OFFSET_UCONTEXT + sf.SAVED_SIZE]
        assert sf.parse(ucontext).altstack is None
