# The whole of ring 0 in a Kontain VM.
#
# Ring-0 code is emulated instruction by instruction on PVM hosts, so every entry is
# exactly two instructions: an `out` that exits to km (the port says which event it was),
# then `iretq` back to the payload. km does all the work between the two: it reads and
# writes the vCPU registers through kvm_run's sync regs and the iret frame on this
# vCPU's ring-0 stack, whose top comes from TSS.RSP0.
#
# kontain/machine/stub.py holds these bytes; tests/test_stub.py assembles this file
# with `as` and checks that they match.

    .code64
    .text

# LSTAR: the `syscall` instruction lands here at CPL 0 with the user's rsp still loaded,
# rip in rcx and rflags in r11. km builds the iret frame and points rsp at it.
syscall_entry:
    outb %al, $0xa0
    iretq

# IDT vector N (0..31) lands at syscall_entry + 4 + 4 * N, on the ring-0 stack, with the
# hardware frame (and the error code, for the vectors that push one) below RSP0.
    .irp v,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    outb %al, $(0x80 + \v)
    iretq
    .endr
