// KVM layer.
