"""Diagonal state spaces (DSS, Gupta et al. 2022): the kernel, and two ways to apply it."""
from .forward import MODES, dss_forward, dss_recurrent, path_tolerance
from .kernel import discretised_C, dss_kernel
from .oracle import dss_error_scale, dss_oracle

__all__ = ["MODES", "discretised_C", "dss_error_scale", "dss_forward", "dss_kernel", "dss_oracle", "dss_recurrent",
           "path_tolerance"]
