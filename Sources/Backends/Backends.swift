// Backends layer.
