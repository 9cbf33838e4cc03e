"""The testbenches shipped as package data: ``tb_network.py`` (cocotb), ``tb_stream.v`` (compiled
stream testbench) and ``bus.py``, the packing rule both testbenches and the IP core's hex files use.

A package so that the flow imports the bus module as ``codesign.testbenches.bus``; the cocotb
testbench imports the same file as the top-level module ``bus`` from its own folder, because it
also runs from an IP core folder without codesign installed. Importing this package imports
nothing (``tb_network`` needs cocotb).
"""
