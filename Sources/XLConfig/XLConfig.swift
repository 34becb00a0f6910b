// XLConfig layer.
