"""The OCI seccomp profile (config.json linux.seccomp), compiled for km to enforce.

km carries out every system call of its payload itself, so it enforces the container's
profile on the payload's calls before carrying them out, instead of loading it as a BPF
filter on km (whose own filter is kontain.monitor.seccomp). `compile_profile` checks the
profile the way runc does and precomputes, per system call number, either one constant
`Verdict` or a short list of (conditions, verdict) tried in order; `SeccompPolicy.decide`
is one dict lookup for any call whose verdict does not depend on its arguments.

What the verdict is must be what the same profile gives under runc on x86-64, so this
follows, step by step:

- runtime-spec config-linux.md "Seccomp": names, actions, `errnoRet` and
  `defaultErrnoRet` (EPERM when absent; an error with an action that takes no errno),
  args (`index`, `value`, `valueTwo`, `op`).
- runc libcontainer/seccomp/seccomp_linux.go: SCMP_ACT_KILL is KILL_THREAD; a rule whose
  action equals the default action is skipped as redundant (before anything else: it
  never shadows another rule); a name libseccomp cannot resolve is ignored; a rule that
  compares one argument twice becomes one rule per comparison (so those comparisons
  are ORed, runc issue #2735), otherwise a rule's comparisons are ANDed.
- runc libcontainer/seccomp/patchbpf/enosys_linux.go: unless the default action lets
  calls through (ALLOW, LOG, TRACE), a call numbered above every call the profile names
  fails with ENOSYS (so that libcs fall back from calls newer than the profile), for
  the architectures the profile lists (SCMP_ARCH_X86_64 here).
- libseccomp (src/db.c, seccomp_rule_add(3)): which rule decides when several rules
  name one call, see `_order`; 64-bit unsigned comparisons; SCMP_CMP_MASKED_EQ takes
  the mask from `value` and compares with `valueTwo & value` (a zero mask is a
  tautology, dropped); no errno from MAX_ERRNO (4095) up; architectures not in the
  filter get SCMP_ACT_KILL.
- the kernel (Documentation/userspace-api/seccomp_filter.rst, kernel/seccomp.c): what
  each action does; TRACE with no tracer is ENOSYS; TRAP's SIGSYS, see `SigsysInfo`.

km runs x86-64 payloads only: an i386 `int $0x80` is SIGSEGV in km, never a system call,
and km has no x32 ABI (numbers with bit 30 set). So SCMP_ARCH_X86 and SCMP_ARCH_X32 are
accepted but add no rules: an x32 number gets libseccomp's bad-architecture action
(KILL_THREAD) without SCMP_ARCH_X32, the default action with it (where Linux would look
up the x32 rules, km can only answer ENOSYS).
"""

from __future__ import annotations

from kontain.linux.numbers import NUMBERS

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

# Verdict kinds, as Linux's SECCOMP_RET_* action values (include/uapi/linux/seccomp.h).
KILL_PROCESS = 0x80000000
KILL_THREAD = 0x00000000
TRAP = 0x00030000
ERRNO = 0x00050000
TRACE = 0x7FF00000
LOG = 0x7FFC0000
ALLOW = 0x7FFF0000

_KIND_NAMES = {KILL_PROCESS: "KILL_PROCESS", KILL_THREAD: "KILL_THREAD", TRAP: "TRAP",
               ERRNO: "ERRNO", TRACE: "TRACE", LOG: "LOG", ALLOW: "ALLOW"}

EPERM, ENOSYS = 1, 38
MAX_ERRNO = 4095
SIGSYS = 31
SYS_SECCOMP = 1  # si_code of a seccomp SIGSYS
AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000
_U32 = 0xFFFFFFFF
_U64 = 0xFFFFFFFFFFFFFFFF
_DENSE = 512  # numbers below this get a precomputed verdict (x86-64 ends at 450)

#: The spec's action names -> (kind, takes errnoRet). SCMP_ACT_NOTIFY is known but
#: refused: krun has no seccomp agent to hand the listener to.
ACTIONS = {
    "SCMP_ACT_KILL": (KILL_THREAD, False),
    "SCMP_ACT_KILL_THREAD": (KILL_THREAD, False),
    "SCMP_ACT_KILL_PROCESS": (KILL_PROCESS, False),
    "SCMP_ACT_TRAP": (TRAP, False),
    "SCMP_ACT_ERRNO": (ERRNO, True),
    "SCMP_ACT_TRACE": (TRACE, True),
    "SCMP_ACT_LOG": (LOG, False),
    "SCMP_ACT_ALLOW": (ALLOW, False),
}

# Comparison operators: libseccomp's enum scmp_compare values.
NE, LT, LE, EQ, GE, GT, MASKED_EQ = 1, 2, 3, 4, 5, 6, 7
OPERATORS = {"SCMP_CMP_NE": NE, "SCMP_CMP_LT": LT, "SCMP_CMP_LE": LE, "SCMP_CMP_EQ": EQ,
             "SCMP_CMP_GE": GE, "SCMP_CMP_GT": GT, "SCMP_CMP_MASKED_EQ": MASKED_EQ}

#: libseccomp's architecture names (the spec's list, and runc's SCMP_ARCH_LOONGARCH64).
ARCHITECTURES = frozenset({
    "SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X",
    "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64", "SCMP_ARCH_LOONGARCH64",
})

#: seccomp(2) filter flags a profile may ask for. They change nothing km has to decide:
#: LOG asks that every verdict but ALLOW be logged (SeccompPolicy.log), TSYNC holds for
#: all the payload's threads anyway, SPEC_ALLOW is about the host CPU's mitigations and
#: WAIT_KILLABLE_RECV only about SCMP_ACT_NOTIFY.
FLAGS = frozenset({"SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                   "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"})


class SeccompProfileError(ValueError):
    """linux.seccomp cannot be enforced as given: krun refuses the container, as runc."""


class SigsysInfo:
    """The siginfo of a TRAP verdict's SIGSYS, as kernel/seccomp.c seccomp_init_siginfo.

    call_addr is the user rip *after* the syscall instruction (KSTK_EIP: the kernel's
    doc says "the system call instruction", its code gives the return address); syscall
    is the number's low 32 bits. Before the signal the kernel rolls the call back
    (syscall_rollback): the handler sees rax as the payload loaded it (the whole 64-bit
    number), and the call "returns" that if the handler returns. Checked on Linux in
    tests/unit/test_oci_seccomp.py.
    """

    __slots__ = ("signo", "code", "errno", "call_addr", "syscall", "arch")

    def __init__(self, errno: int, call_addr: int, syscall: int) -> None:
        self.signo = SIGSYS
        self.code = SYS_SECCOMP
        self.errno = errno          # the action's data (SECCOMP_RET_DATA)
        self.call_addr = call_addr
        self.syscall = syscall
        self.arch = AUDIT_ARCH_X86_64


class Verdict:
    """What a profile decides for one call: a kind (ALLOW, ERRNO, ...) and its 16-bit data."""

    __slots__ = ("kind", "data")

    def __init__(self, kind: int, data: int = 0) -> None:
        self.kind = kind
        self.data = data & 0xFFFF  # SECCOMP_RET_DATA; runc passes errnoRet as int16

    @property
    def allowed(self) -> bool:
        """Carry the call out (LOG: and log it)."""
        return self.kind == ALLOW or self.kind == LOG

    @property
    def errno(self) -> int:
        """The error the call returns, for ERRNO and TRACE (no tracer: ENOSYS).

        ERRNO(0) makes the call return 0 without being carried out, as on Linux (the
        kernel would cap the data at MAX_ERRNO; libseccomp accepts none that high).
        """
        if self.kind == ERRNO:
            return min(self.data, MAX_ERRNO)
        if self.kind == TRACE:
            return ENOSYS  # km's payloads have no seccomp tracer (PTRACE_O_TRACESECCOMP)
        raise ValueError(f"{self!r} returns no errno")

    @property
    def ret(self) -> int:
        """The filter's return value Linux would act on (and audit): kind | data."""
        return self.kind | self.data

    def sigsys(self, nr: int, call_addr: int) -> SigsysInfo:
        """The SIGSYS a TRAP verdict sends for call `nr` returning to `call_addr`."""
        if self.kind != TRAP:
            raise ValueError(f"{self!r} sends no SIGSYS")
        return SigsysInfo(self.data, call_addr, nr)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Verdict) and self.ret == other.ret

    def __hash__(self) -> int:
        return self.ret

    def __repr__(self) -> str:
        name = _KIND_NAMES[self.kind]
        return f"{name}({self.data})" if self.kind in (ERRNO, TRACE, TRAP) else name


_ENOSYS = Verdict(ERRNO, ENOSYS)
_BAD_ARCH = Verdict(KILL_THREAD)  # libseccomp's default SCMP_FLTATR_ACT_BADARCH


def _first_match(rules: tuple, args: Sequence[int]) -> Verdict | None:
    """The verdict of the first rule whose comparisons all hold (64-bit unsigned)."""
    for conditions, verdict in rules:
        for index, op, a, b in conditions:
            value = args[index] & _U64
            if op == EQ:
                if value != a:
                    break
            elif op == MASKED_EQ:
                if value & a != b:
                    break
            elif op == NE:
                if value == a:
                    break
            elif op == LT:
                if value >= a:
                    break
            elif op == LE:
                if value > a:
                    break
            elif op == GE:
                if value < a:
                    break
            elif value <= a:  # GT
                break
        else:
            return verdict
    return None


class SeccompPolicy:
    """A compiled profile: `decide(nr, args)` for each system call of the payload.

    Where km asks per call, the integer registers are unsigned 64-bit values; only the
    low 32 bits of the number count, as in Linux's struct seccomp_data.
    """

    def __init__(self, default: Verdict, constant: dict[int, Verdict],
                 conditional: dict[int, tuple], *, enosys_above: int | None,
                 x32: bool, log: bool, flags: frozenset[str],
                 ignored_names: tuple[str, ...]) -> None:
        self.default = default
        #: Numbers below _DENSE whose verdict does not depend on the arguments.
        self._constant = constant
        #: number -> ((conditions, verdict), ...) in libseccomp's order; each condition
        #: is (argument index, operator, operand, masked datum).
        self._conditional = conditional
        self.enosys_above = enosys_above
        self.x32 = x32
        #: SECCOMP_FILTER_FLAG_LOG: Linux then logs every verdict but ALLOW (LOG always).
        self.log = log
        self.flags = flags
        #: Names in the profile that are not x86-64 calls km knows (runc ignores those too).
        self.ignored_names = ignored_names
        #: Numbers always carried out unchecked: a dispatcher can leave these unwrapped.
        self.always_allowed = frozenset(n for n, v in constant.items() if v.kind == ALLOW)
        #: Called with (call name, verdict) for each call not allowed (km --policy's
        #: stats); None: not counted.
        self.on_deny: Callable[[str, str], object] | None = None

    def decide(self, nr: int, args: Sequence[int]) -> Verdict:
        """The verdict for system call `nr` with argument registers `args` (six ints)."""
        verdict = self._constant.get(nr)
        if verdict is not None:
            return verdict
        rules = self._conditional.get(nr)
        if rules is not None:
            return _first_match(rules, args) or self.default
        return self._unlisted(nr, args)

    def constant(self, nr: int) -> Verdict | None:
        """The verdict of `nr` if it does not depend on the arguments; None: ask decide."""
        return self._constant.get(nr) if nr not in self._conditional else None

    def _unlisted(self, nr: int, args: Sequence[int]) -> Verdict:
        """Numbers outside the dense table: wide registers, x32, numbers past the table."""
        low = nr & _U32
        if low != nr:
            return self.decide(low, args)
        # runc's -ENOSYS stub runs first and skips numbers with the x32 bit set.
        if self.enosys_above is not None and not nr & X32_SYSCALL_BIT \
                and nr > self.enosys_above:
            return _ENOSYS
        # libseccomp's x86-64 filter sends numbers >= the x32 bit, except -1 (which a
        # tracer uses to skip a call), to the bad-architecture action (SCMP_ACT_KILL).
        if nr >= X32_SYSCALL_BIT and nr != _U32 and not self.x32:
            return _BAD_ARCH
        return self.default


# ---- compiling a profile ---------------------------------------------------------------


def compile_profile(seccomp: dict | None,
                    numbers: Mapping[str, int] = NUMBERS) -> SeccompPolicy | None:
    """linux.seccomp as krun enforces it; None when there is nothing to enforce.

    As runc: no object, or neither defaultAction nor syscalls, means no seccomp.
    Raises SeccompProfileError for what runc (or the spec) refuses, and for
    SCMP_ACT_NOTIFY, which krun does not support.
    """
    if seccomp is None:
        return None
    if not isinstance(seccomp, dict):
        raise SeccompProfileError("linux.seccomp must be an object")
    syscalls = seccomp.get("syscalls") or []
    if not seccomp.get("defaultAction") and not syscalls:
        return None
    default = _verdict(seccomp.get("defaultAction"), seccomp.get("defaultErrnoRet"),
                       "linux.seccomp.defaultAction")
    architectures = _strings(seccomp.get("architectures"), "linux.seccomp.architectures")
    for arch in architectures:
        if arch not in ARCHITECTURES:
            raise SeccompProfileError(f"linux.seccomp.architectures: unknown {arch!r}")
    flags = _strings(seccomp.get("flags"), "linux.seccomp.flags")
    for flag in flags:
        if flag not in FLAGS:
            raise SeccompProfileError(f"linux.seccomp.flags: unknown {flag!r}")
    if not isinstance(syscalls, list):
        raise SeccompProfileError("linux.seccomp.syscalls must be a list")

    # runc's order: one rule per name, in the profile's order.
    unconditional: dict[int, Verdict] = {}
    conditional: dict[int, list[tuple[tuple, Verdict]]] = {}
    names_of: dict[int, str] = {}
    ignored: list[str] = []
    for i, entry in enumerate(syscalls):
        where = f"linux.seccomp.syscalls[{i}]"
        if not isinstance(entry, dict):
            raise SeccompProfileError(f"{where} must be an object")
        verdict = _verdict(entry.get("action"), entry.get("errnoRet"), f"{where}.action")
        names = entry.get("names")
        if not isinstance(names, list) or not names \
                or not all(isinstance(n, str) and n for n in names):
            raise SeccompProfileError(f"{where}.names must be a non-empty list of names")
        args = entry.get("args") or []
        if not isinstance(args, list):
            raise SeccompProfileError(f"{where}.args must be a list")
        comparisons = [_comparison(arg, f"{where}.args[{j}]") for j, arg in enumerate(args)]
        indexes = [index for index, _ in comparisons]
        if len(set(indexes)) < len(indexes):
            # runc: one rule per comparison (libseccomp takes one per argument and rule).
            groups = [[c] for _, c in comparisons]
        else:
            groups = [[c for _, c in comparisons]]
        for name in names:
            nr = numbers.get(name)
            if nr is None:
                ignored.append(name)
                continue
            names_of.setdefault(nr, name)
            if verdict == default:
                continue  # redundant: runc skips it (libseccomp would refuse it, EACCES)
            for group in groups:
                conditions = tuple(sorted(c for c in group if c is not None))
                if nr in unconditional:
                    continue  # libseccomp keeps a rule without comparisons (db_rule_add)
                if conditions:
                    conditional.setdefault(nr, []).append((conditions, verdict))
                else:
                    # No comparison, or only zero-mask MASKED_EQ ones: this rule replaces
                    # the call's conditional rules (added before it, and checked below).
                    unconditional[nr] = verdict

    # runc's stub needs a largest named call above 0 for the architecture.
    enosys_above = None
    if default.kind not in (ALLOW, LOG, TRACE) and "SCMP_ARCH_X86_64" in architectures \
            and max(names_of, default=0) > 0:
        enosys_above = max(names_of)
    ordered = {}
    for nr, rules in conditional.items():
        # Refused as libseccomp refuses adding them, even if a rule without comparisons
        # replaces them afterwards.
        order = tuple(_order(names_of[nr], rules))
        if nr not in unconditional:
            ordered[nr] = order
    constant = {}
    for nr in range(_DENSE):
        if nr in ordered:
            continue
        if nr in unconditional:
            constant[nr] = unconditional[nr]
        elif enosys_above is not None and nr > enosys_above:
            constant[nr] = _ENOSYS
        else:
            constant[nr] = default
    return SeccompPolicy(default, constant, ordered, enosys_above=enosys_above,
                         x32="SCMP_ARCH_X32" in architectures,
                         log="SECCOMP_FILTER_FLAG_LOG" in flags, flags=frozenset(flags),
                         ignored_names=tuple(ignored))


def _verdict(action: object, errno_ret: object, where: str) -> Verdict:
    if action == "SCMP_ACT_NOTIFY":
        raise SeccompProfileError(f"{where}: SCMP_ACT_NOTIFY is not supported by krun "
                                  "(no seccomp agent can be given the payload's calls)")
    if action not in ACTIONS:
        raise SeccompProfileError(f"{where}: unknown action {action!r}")
    kind, takes_errno = ACTIONS[action]
    if errno_ret is None:
        return Verdict(kind, EPERM if takes_errno else 0)
    if not takes_errno:
        # The spec: "When the action doesn't support an errno, the runtime MUST print
        # an error and fail" (runc ignores it; krun follows the spec).
        raise SeccompProfileError(f"{where}: {action} takes no errnoRet")
    verdict = Verdict(kind, _uint(errno_ret, 64, f"{where} errnoRet"))
    if kind == ERRNO and verdict.data >= MAX_ERRNO:
        # runc passes int16(errnoRet); libseccomp refuses an errno from MAX_ERRNO up
        # (EINVAL), so runc fails to create the container.
        raise SeccompProfileError(f"{where}: errnoRet {errno_ret} is not an errno "
                                  f"libseccomp accepts (below {MAX_ERRNO})")
    return verdict


def _comparison(arg: object, where: str) -> tuple[int, tuple | None]:
    """(index, (index, op, operand, datum)) for one args entry; None for a tautology."""
    if not isinstance(arg, dict):
        raise SeccompProfileError(f"{where} must be an object")
    index = arg.get("index")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= 5:
        raise SeccompProfileError(f"{where}.index must be 0 to 5, not {index!r}")
    op = OPERATORS.get(arg.get("op"))
    if op is None:
        raise SeccompProfileError(f"{where}: unknown op {arg.get('op')!r}")
    value = _uint(arg.get("value"), 64, f"{where}.value")
    value_two = _uint(arg.get("valueTwo") or 0, 64, f"{where}.valueTwo")  # null: 0
    if op == MASKED_EQ:
        # SCMP_CMP(index, MASKED_EQ, mask=value, datum=valueTwo); libseccomp masks the
        # datum and drops a zero mask as a tautology (db.c _db_node_mask_fixup,
        # _db_arg_cmp_need_hi/lo).
        if value == 0:
            return index, None
        return index, (index, op, value, value_two & value)
    return index, (index, op, value, 0)


def _uint(value: object, bits: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
        raise SeccompProfileError(f"{where} must be an unsigned {bits}-bit integer, "
                                  f"not {value!r}")
    return value


def _strings(value: object, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SeccompProfileError(f"{where} must be a list of strings")
    return value


# ---- libseccomp's order for several rules of one call -----------------------------------
#
# libseccomp gives actions no precedence inside one filter (KILL > TRAP > ERRNO > ... is
# the kernel's rule across stacked filters). It merges a call's conditional rules into a
# decision tree (src/db.c: _db_rule_gen_arg_64 builds each rule as a chain of 32-bit
# comparisons, high word then low word, argument 0 first; _db_tree_add merges chains)
# and the generated BPF walks it depth-first: the first rule whose comparisons all hold
# decides, a failed branch falling through to the next node of its level. Nodes of a
# level are kept in _db_chain_lt's order, highest first: the higher argument index, the
# high word before the low, then EQ/NE/MASKED_EQ before LT/LE before GE/GT, then the
# larger datum (the smaller for LT/LE), equal keys in the order added; equal nodes
# (same argument, word, comparison, datum and mask) are one node. A rule that extends
# one already there is dropped; the same rule with another action, or a shorter rule
# added after longer ones with other actions, makes libseccomp fail with EEXIST, which
# runc reports as an error. Checked against the kernel in tests/unit/test_oci_seccomp.py.
#
# Known differences from libseccomp 2.5.4 (measured on generated profiles, see the
# tests): (1) rules with different actions comparing one argument through a shared
# high-word node (several NE, or range comparisons of equal high word), for an argument
# whose high word differs: libseccomp's choice depends on the order the rules were added
# and on which created the node; krun keeps the order above. (2) Multi-argument rules
# sharing a NE or range comparison share their subtrees in libseccomp, so one rule's
# later comparisons can decide for another (or libseccomp refuses them, EEXIST); krun
# checks each rule's own comparisons. (3) libseccomp's BPF generator sometimes compares
# a stale accumulator after a failed branch, so the kernel differs from libseccomp's own
# tree; krun follows the tree. Docker's default profile (single comparisons of 32-bit
# values, one action per call) is outside all three.

class _Node:
    """One comparison of a 32-bit word in the tree: equal nodes are shared."""

    __slots__ = ("ident", "rank", "children", "rule", "rules_below")

    def __init__(self, ident: tuple, rank: tuple) -> None:
        self.ident = ident
        self.rank = rank  # (argument priority, operator priority, datum, LT/LE)
        self.children: list[_Node] = []
        self.rule: tuple | None = None   # the rule that ends here
        self.rules_below: list[tuple] = []


_OP_PRIORITY = {EQ: 3, NE: 3, MASKED_EQ: 3, LT: 2, LE: 2, GE: 1, GT: 1}


def _words(index: int, op: int, a: int, b: int) -> tuple[tuple, tuple]:
    """The high-word and low-word nodes of one comparison, as (ident, rank) each.

    A range comparison's high node is "hi > H" (op GT, then "hi == H" under its false
    branch) whatever the operator; its low node is "lo > L" or "lo >= L". Where the rule
    goes on from a low node (true or false branch) is part of that node's identity here.
    """
    priority = _OP_PRIORITY[op]
    smaller_first = op in (LT, LE)
    if op == MASKED_EQ:
        hi = (index, 1, MASKED_EQ, b >> 32, a >> 32)
        lo = (index, 0, MASKED_EQ, b & _U32, a & _U32, True)
    elif op in (EQ, NE):
        hi = (index, 1, EQ, a >> 32, _U32)
        lo = (index, 0, EQ, a & _U32, _U32, op == EQ)
    else:
        hi = (index, 1, GT, a >> 32, _U32)
        lo = (index, 0, GT if op in (GT, LE) else GE, a & _U32, _U32, op in (GT, GE))
    return ((hi, (2 * index + 1, priority, hi[3], smaller_first)),
            (lo, (2 * index, priority, lo[3], smaller_first)))


def _ranks_below(x: tuple, n: tuple) -> bool:
    """_db_chain_lt(x, n): x sorts below n (n goes first); x's operator picks the sense."""
    if x[0] != n[0]:
        return x[0] < n[0]
    if x[1] != n[1]:
        return x[1] < n[1]
    return x[2] > n[2] if x[3] else x[2] < n[2]


def _child(level: list[_Node], ident: tuple, rank: tuple) -> _Node:
    """The node of `level` equal to (ident), else a new one placed as _db_tree_add does."""
    for i, x in enumerate(level):
        if x.ident == ident:
            return x
        if _ranks_below(x.rank, rank):
            node = _Node(ident, rank)
            level.insert(i, node)
            return node
    node = _Node(ident, rank)
    level.append(node)
    return node


def _order(name: str, rules: list[tuple[tuple, Verdict]]) -> Iterator[tuple[tuple, Verdict]]:
    """A call's conditional rules in the order libseccomp's filter tries them."""
    root: list[_Node] = []
    for rule in rules:
        conditions, verdict = rule
        path: list[_Node] = []
        level = root
        for condition in conditions:
            for ident, rank in _words(*condition):
                node = _child(level, ident, rank)
                path.append(node)
                level = node.children
        end = path[-1]
        if any(node.rule is not None for node in path[:-1]):
            continue  # a shorter rule already decides: this one is dropped
        if end.rule is not None or end.rules_below:
            others = [end.rule] if end.rule is not None else end.rules_below
            if any(other[1] != verdict for other in others):
                raise SeccompProfileError(
                    f"linux.seccomp: rules for {name} with the same comparisons "
                    f"and different actions ({others[0][1]!r}, {verdict!r}): libseccomp "
                    "refuses them (EEXIST)")
            if end.rule is not None:
                continue
        end.rule = rule
        end.children.clear()  # the longer rules below are dropped
        for node in path[:-1]:
            node.rules_below.append(rule)

    def walk(level: list[_Node]) -> Iterator[tuple[tuple, Verdict]]:
        for node in level:
            if node.rule is not None:
                yield node.rule
            else:
                yield from walk(node.children)

    return walk(root)

