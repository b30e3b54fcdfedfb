"""The guest's memory as its program sees it: mappings (vma), checked access to them
(access: the hot path of every system call that takes a pointer), and what mmap,
munmap, mprotect, brk and mremap do to them (space). Below the loader and the monitor,
above the machine whose physical memory and page tables it manages.

Lock order: AddressSpace.lock (held by every change of the mappings) is taken before any
other lock km has, and never while holding one; readers of guest memory take no lock
(they work on the published VMA list, see access.py).
"""
