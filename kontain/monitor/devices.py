"""A container's device rules (linux.resources.devices), checked by km when the payload
opens a device node.

On a legacy (v1) host the devices controller enforces them too, and this is a second
wall; on a cgroup v2 host the kernel would need an eBPF program for them, which krun does
not load, and this is the wall. The payload cannot make device nodes (km refuses mknod),
so what it can open is what the container's /dev holds, under these rules.
"""

from __future__ import annotations


def _number(value: object) -> int | None:
    return value if isinstance(value, int) and value >= 0 else None


class DeviceRules:
    """The rules in order; the last one matching a device and an access decides, and a
    device no rule matches is allowed (the devices cgroup's default)."""

    def __init__(self, rules: list[dict]) -> None:
        self._rules = [(bool(rule.get("allow")), rule.get("type") or "a",
                        _number(rule.get("major")), _number(rule.get("minor")),
                        rule.get("access") or "rwm")
                       for rule in rules]

    def permits(self, kind: str, major: int, minor: int, access: str) -> bool:
        """Whether a device of kind ("c" or "b") major:minor may be opened for access
        ("r", "w" or "rw")."""
        for wanted in access:
            verdict = True
            for allow, rule_kind, rule_major, rule_minor, rule_access in self._rules:
                if rule_kind in ("a", kind) and wanted in rule_access \
                        and rule_major in (None, major) and rule_minor in (None, minor):
                    verdict = allow
            if not verdict:
                return False
        return True
