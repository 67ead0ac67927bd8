"""`nic serve`: a web page comparing nic with JPEG, WebP and AVIF at the same file size."""
