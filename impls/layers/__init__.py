"""The user-facing layers of the two seeds, built on the scan, convolution and DSS interfaces."""
