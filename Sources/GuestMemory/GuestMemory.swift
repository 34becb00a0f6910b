// GuestMemory layer.
