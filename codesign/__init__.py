"""codesign: QKeras/tfmot training -> hls4ml conversion -> bit-exact Verilog -> cocotb/Verilator
verification -> Yosys synthesis -> reports and sweeps."""

__version__ = "0.1.0"
