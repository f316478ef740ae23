"""Sweeps are data: presets that command-line flags override field by field.

accuracy: every backend x dtype x gate regime x kv regime x length, outputs and gradients; scans also
reverse and packed (varlen) at the layout lengths.
gpu: the quick accuracy sweep plus the scan table at B = 8, D = 1536, L up to 65536, float32 and bfloat16.
perf: per family (scan, conv, dss, layer, varlen), every backend at each (L, dtype, mode), interleaved with the
bandwidth floor; varlen times packed rows and dense ones of the same size; decode one generation step.
Timing rounds: at least `rounds`, then more while any case's IQR is 10% of its median or more, up to
`max_rounds` or `round_budget_s` seconds of rounds per group (harness/measure/timing.py: Rounds).
"""
import copy

SCAN_DTYPES = ["float32", "float64", "complex64", "complex128", "bfloat16", "float16"]
MODES = ["forward", "forward+backward"]

# reverse and packed cases (impls/layouts.py), every gate regime and the first kv regime, at the
# preset's layout_lengths (the longest of the accuracy sweep's --lengths when given)
LAYOUT_CASES = {"layouts": ["reverse", "varlen", "varlen+reverse"]}

# the varlen perf family: one row of packed_lengths(L) sequences (harness/measure/inputs.py), each backend timed
# packed and dense on the same (1, L, D), in groups of their own against the floor of the same bytes
VARLEN_CASES = {"batch": 1, "channels": 256, "layouts": ["dense", "varlen"]}

# the decode family (harness/run/decode.py): one generation step per (dtype, B, D), every path of every backend;
# `lengths` are the prompts generation end to end starts from; --batch and --channels pick one B and D
DECODE_PATHS = ["scan", "gate_loop_operator", "gate_loop", "gss", "lm"]
DECODE = {"modes": ["forward"], "batch": None, "channels": None, "paths": DECODE_PATHS}

PRESETS = {
    # every family and backend at a few sizes, in about 3.5 minutes on 2 cores (README: presets)
    "quick": {
        "accuracy": {"lengths": [1, 127, 1024], "batch": 2, "channels": 4, "dtypes": SCAN_DTYPES,
                     "gate_regimes": ["sigmoid", "zeros", "signed"], "kv_regimes": ["mixed"],
                     "gradients_max_len": 127, "backends": None, **LAYOUT_CASES, "layout_lengths": [127]},
        "perf": {
            "scan": {"lengths": [256, 1024], "batch": 4, "channels": 64, "dtypes": ["float32"], "modes": MODES,
                     "backends": None},
            "conv": {"lengths": [256, 1024], "batch": 2, "channels": 32, "dtypes": ["float32"],
                     "modes": ["forward"], "backends": ["direct", "fft", "fft_fast"], "direct_max_len": 1024},
            "dss": {"lengths": [1024], "batch": 2, "channels": 32, "modes_N": [32], "dtypes": ["float32"],
                    "modes": ["forward"],
                    "backends": ["conv:direct", "conv:fft", "conv:fft_fast", "recurrent:assoc", "recurrent:chunked"],
                    "direct_max_len": 4096},
            "layer": {"lengths": [256], "batch": 2, "channels": 32, "dtypes": ["float32"], "modes": MODES,
                      "backends": None},
            "varlen": {"lengths": [4096], **VARLEN_CASES, "dtypes": ["float32"], "modes": MODES,
                       "backends": ["native", "assoc", "chunked", "jax_scan"]},
            "decode": {**DECODE, "lengths": [512], "batches": [1, 64], "widths": [64, 4096], "dtypes": ["float32"],
                       "paths": ["scan", "gate_loop_operator", "gate_loop"], "backends": ["native", "assoc", "jax_scan"]},
        },
        "rounds": 6, "max_rounds": 12, "round_budget_s": 2.0, "min_sample_s": 0.005, "memory": True,
    },
    "full": {
        "accuracy": {"lengths": [1, 2, 7, 127, 128, 1021, 1024, 4099, 16384], "batch": 2, "channels": 16,
                     "dtypes": SCAN_DTYPES, "gate_regimes": ["sigmoid", "long_memory", "zeros", "ones", "signed"],
                     "kv_regimes": ["normal", "mixed"], "gradients_max_len": 4099, "backends": None, **LAYOUT_CASES,
                     "layout_lengths": [127, 1021, 4099]},
        "perf": {
            "scan": {"lengths": [256, 1024, 4096, 16384, 65536], "batch": 4, "channels": 256,
                     "dtypes": ["float32", "float64"], "modes": MODES, "backends": None},
            "conv": {"lengths": [16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 16384], "batch": 4, "channels": 256,
                     "dtypes": ["float32", "float64"], "modes": MODES, "backends": ["direct", "fft", "fft_fast"],
                     "direct_max_len": 4096},
            "dss": {"lengths": [256, 1024, 4096, 16384], "batch": 4, "channels": 256, "modes_N": [64, 512],
                    "dtypes": ["float32"], "modes": ["forward", "forward+backward"],
                    "backends": ["conv:direct", "conv:fft", "conv:fft_fast", "recurrent:chunked", "recurrent:assoc"],
                    "direct_max_len": 4096},
            "layer": {"lengths": [1024, 4096], "batch": 4, "channels": 256, "dtypes": ["float32"], "modes": MODES,
                      "backends": None},
            "varlen": {"lengths": [4096, 16384], **VARLEN_CASES, "dtypes": ["float32"], "modes": MODES, "backends": None},
            "decode": {**DECODE, "lengths": [512], "batches": [1, 8, 64], "widths": [64, 512, 4096],
                       "dtypes": ["float32", "bfloat16"], "backends": None},
        },
        "rounds": 10, "max_rounds": 30, "round_budget_s": 10.0, "min_sample_s": 0.05, "memory": True,
    },
    # the GPU table researchers compare kernels on: B * D = 12288 channels, L up to 65536
    "gpu": {
        "accuracy": {"lengths": [1, 127, 1024, 4099, 16384], "batch": 2, "channels": 64, "dtypes": SCAN_DTYPES,
                     "gate_regimes": ["sigmoid", "long_memory", "zeros", "ones", "signed"],
                     "kv_regimes": ["normal", "mixed"], "gradients_max_len": 4099, "backends": None, **LAYOUT_CASES,
                     "layout_lengths": [127, 4099]},
        "perf": {
            "scan": {"lengths": [1024, 4096, 16384, 65536], "batch": 8, "channels": 1536,
                     "dtypes": ["float32", "bfloat16"], "modes": MODES, "backends": None},
            "conv": {"lengths": [256, 1024, 4096, 16384], "batch": 8, "channels": 256, "dtypes": ["float32"],
                     "modes": MODES, "backends": ["direct", "fft", "fft_fast"], "direct_max_len": 4096},
            "dss": {"lengths": [1024, 4096, 16384], "batch": 8, "channels": 256, "modes_N": [64], "dtypes": ["float32"],
                    "modes": MODES, "backends": ["conv:fft", "conv:fft_fast", "recurrent:chunked"],
                    "direct_max_len": 4096},
            "layer": {"lengths": [1024, 4096], "batch": 8, "channels": 512, "dtypes": ["float32"], "modes": MODES,
                      "backends": None},
            "varlen": {"lengths": [16384, 65536], **VARLEN_CASES, "channels": 1536, "dtypes": ["float32"], "modes": MODES,
                       "backends": None},
            "decode": {**DECODE, "lengths": [512], "batches": [1, 8, 64], "widths": [64, 512, 4096],
                       "dtypes": ["float32", "bfloat16"], "backends": None},
        },
        "rounds": 10, "max_rounds": 30, "round_budget_s": 10.0, "min_sample_s": 0.05, "memory": True,
    },
    "ci": {
        "accuracy": {"lengths": [1, 127, 1024], "batch": 2, "channels": 4, "dtypes": ["float32", "float64"],
                     "gate_regimes": ["sigmoid", "zeros"], "kv_regimes": ["mixed"], "gradients_max_len": 127,
                     "backends": None, **LAYOUT_CASES, "layout_lengths": [127]},
        "perf": {
            "scan": {"lengths": [1024, 4096], "batch": 4, "channels": 256, "dtypes": ["float32"], "modes": MODES,
                     "backends": None},
            "conv": {"lengths": [64, 1024], "batch": 2, "channels": 32, "dtypes": ["float32"], "modes": ["forward"],
                     "backends": ["direct", "fft", "fft_fast"], "direct_max_len": 1024},
            "dss": {"lengths": [1024], "batch": 2, "channels": 32, "modes_N": [32], "dtypes": ["float32"],
                    "modes": ["forward"], "backends": ["conv:direct", "conv:fft", "conv:fft_fast", "recurrent:chunked"],
                    "direct_max_len": 4096},
            "layer": {"lengths": [512], "batch": 2, "channels": 64, "dtypes": ["float32"], "modes": ["forward"],
                      "backends": None},
            "varlen": {"lengths": [1024], **VARLEN_CASES, "dtypes": ["float32"], "modes": ["forward"],
                       "backends": ["native", "assoc"]},
            "decode": {**DECODE, "lengths": [], "batches": [1], "widths": [64], "dtypes": ["float32"],
                       "paths": ["scan", "gate_loop"], "backends": ["native", "assoc"]},
        },
        # at least 6 rounds: the fewest at which compare's Mann-Whitney test can reach p < 0.002
        "rounds": 6, "max_rounds": 12, "round_budget_s": 3.0, "min_sample_s": 0.01, "memory": False,
    },
}
FAMILIES = ("scan", "conv", "dss", "layer", "varlen", "decode")


def preset(name):
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return copy.deepcopy(PRESETS[name])


def override(section, **flags):
    """A copy of `section` with every flag that is not None replacing its field."""
    merged = copy.deepcopy(section)
    for key, value in flags.items():
        if value is not None:
            if key not in merged:
                raise ValueError(f"{key!r} is not a field of this sweep; fields: {', '.join(merged)}")
            merged[key] = value
    return merged
