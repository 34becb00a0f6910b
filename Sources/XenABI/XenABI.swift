// XenABI layer.
