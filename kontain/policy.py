"""kontain.Policy, for the library (kontain.run, Popen, asyncio) and its users.

Defined with what km enforces (kontain.monitor.policy): km reads the same value from
`km --policy FILE`.
"""

from kontain.monitor.policy import NETWORKS, SECRETS, Policy, parse_size

__all__ = ["Policy", "parse_size", "NETWORKS", "SECRETS"]
