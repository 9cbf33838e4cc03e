"""Datapath architectures the RTL backend builds layers from, as netlists (``netlist.Module``).

- ``dense``: a layer's constant-weight products and sums: parallel pipelined trees, the sequential
  saturating chain, folded multiplier lanes (RF > 1)
- ``adder_graph``: RF 1 constant-coefficient adder graphs shared across a layer's outputs, their
  pipeline registers placed by the clock's delay budget; its steps are ``adder_build`` (graph and
  common subexpressions), ``adder_lower`` (widths, LUT cost), ``adder_schedule`` (register
  placement, with the delay model of ``adder_timing``) and ``adder_emit`` (Verilog)
- ``pool``: parallel comparator / adder trees of max and average pooling
- ``netlist``, ``csd``: the netlist model the builders write, canonical signed digits

The layer kinds (``codesign.layers``) choose among them; nothing here knows a layer kind's name.
"""
