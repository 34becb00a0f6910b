// Hypervisor layer.
