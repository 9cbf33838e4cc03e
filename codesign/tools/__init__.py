"""Tools beside the flow: the fuzzer, the conformance run, the benchmarks and the RTL lock.

They drive the same pipeline the flow stages use (:mod:`codesign.pipeline`); nothing in the flow
imports them.
"""
