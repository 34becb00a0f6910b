// XenStore layer.
