// Toolstack layer.
