"""scanlab's implementations: scan backends, convolution backends, DSS, and the layers built on them."""
from .backend import BackendUnavailableError
from .scan import all_scan_backends, get_scan_backend, oracle, scan_backends

__all__ = ["BackendUnavailableError", "all_scan_backends", "get_scan_backend", "oracle", "scan_backends"]
