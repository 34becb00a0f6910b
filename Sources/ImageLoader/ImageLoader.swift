// ImageLoader layer.
