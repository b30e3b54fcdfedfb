"""krun: an OCI runtime (a drop-in for runc) whose every container process is a km VM.

config.json (kontain.oci.spec) says what to build; the container's first process sets
up its namespaces, root file system and limits itself (kontain.oci.container), waits for
`krun start`, and then becomes km, which runs process.args in a VM with the container's
root as its /; krun keeps each container's state under --root (kontain.oci.state).
"""
