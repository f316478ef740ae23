"""scanlab's harness: inputs, verification, timing, memory, records, comparison and reports."""
