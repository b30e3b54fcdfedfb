"""Facts of the Linux x86-64 ABI, and calling the host kernel (the bottom layer, with kvm)."""
