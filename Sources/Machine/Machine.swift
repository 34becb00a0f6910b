// Machine layer.
