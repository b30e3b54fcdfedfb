"""kontain: each process of a container in its own tiny KVM virtual machine."""

__version__ = "0.1.0"
