"""scanlab's implementations: scan backends, convolution backends, DSS, and the layers built on them."""
from .backend import BackendUnavailableError, UnsupportedInputError
from .conv import all_conv_backends, conv_backends, conv_oracle, get_conv_backend
from .dss import dss_forward, dss_kernel, dss_recurrent
from .layers.gate_loop import SimpleGateLoopLayer, gate_loop_operator
from .layers.gss import DSS, GSS, GatedStateSpacesLM
from .scan import all_scan_backends, get_scan_backend, oracle, scan_backends

__all__ = [
    "BackendUnavailableError", "UnsupportedInputError", "DSS", "GSS", "GatedStateSpacesLM", "SimpleGateLoopLayer",
    "all_conv_backends", "all_scan_backends", "conv_backends", "conv_oracle", "dss_forward", "dss_kernel",
    "dss_recurrent", "gate_loop_operator", "get_conv_backend", "get_scan_backend", "oracle", "scan_backends",
]
