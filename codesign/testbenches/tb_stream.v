// tb_stream: a self-contained, file-driven streaming testbench for a codesign accelerator.
//
// Verilog-2005; runs under `verilator --binary --timing` and Icarus `iverilog -g2005`. The DUT is
// any module with the docs/DESIGN.md interface (clk, rst, in_valid/in_ready/in_data,
// out_valid/out_ready/out_data); its name comes from the TOP define (+define+TOP=... / -DTOP=...).
//
// Stimulus: N input vectors of BEATS words each (an io_stream design takes an image as one word
// per pixel; the accept edge of a vector is that of its first word), read with $readmemh from the file given by +in=<file> (or the IN_FILE
// define), driven in order with pseudo-random idle cycles (GAP_PCT % chance that the source stays
// idle on a cycle where it could present the next vector) and pseudo-random output back-pressure
// (BP_PCT % chance that out_ready is low on a cycle). Both come from xorshift32 generators seeded by
// SEED, never $random, so every simulator sees the same cycle-by-cycle stimulus.
//
// Checks and output: the AXI4-Stream hold rule on the output (after an edge with out_valid high and
// out_ready low, out_valid must stay high and out_data unchanged), X/Z on out_valid, outputs with no
// accepted input, and outputs after the last expected one (during a DRAIN-cycle tail with out_ready
// high). Every output transfer writes one line "<out_data hex> <accept edge> <output edge>" to the
// file given by +out=<file> (or the OUT_FILE define), in order; the k-th output belongs to the k-th
// input. The last line is "# done cycles=... sent=... received=... violations=... spurious=...
// extra=... timeout=...". A watchdog stops the run after TIMEOUT cycles (timeout=1 in the summary).
//
// Edges are numbered from the first rising clock edge; latency of a vector = output edge - accept
// edge (the cocotb testbench's convention). Reset: rst high (synchronous, active high) for
// RESET_CYCLES edges, then low.
//
// Run-time plusargs override the parameters without a rebuild: +n=<vectors <= N> +gap_pct=
// +bp_pct= +seed= +timeout= +drain=. N is then the capacity of the vector memory.
`default_nettype none
`ifndef TOP
`define TOP codesign_top
`endif
`ifndef IN_FILE
`define IN_FILE "stream_in.hex"
`endif
`ifndef OUT_FILE
`define OUT_FILE "stream_out.txt"
`endif

module tb_stream;
  parameter integer IN_BITS = 8;
  parameter integer OUT_BITS = 8;
  parameter integer N = 16;
  parameter integer GAP_PCT = 20;
  parameter integer BP_PCT = 20;
  parameter integer SEED = 1;
  parameter integer RESET_CYCLES = 4;
  parameter integer TIMEOUT = 1000000;
  parameter integer DRAIN = 64;
  parameter integer BEATS = 1;  // input transfers per vector (an io_stream design: pixels per image)

  reg clk;
  reg rst;
  reg in_valid;
  wire in_ready;
  reg [IN_BITS-1:0] in_data;
  wire out_valid;
  reg out_ready;
  wire [OUT_BITS-1:0] out_data;

  `TOP dut (
    .clk(clk), .rst(rst),
    .in_valid(in_valid), .in_ready(in_ready), .in_data(in_data),
    .out_valid(out_valid), .out_ready(out_ready), .out_data(out_data)
  );

  reg [IN_BITS-1:0] mem [0:N*BEATS-1];
  reg [63:0] acc_edge [0:N-1];
  reg [8*1024-1:0] in_file;
  reg [8*1024-1:0] out_file;
  integer n_vec, gap_pct, bp_pct, seed, drain, fo;
  integer timeout;
  reg [31:0] rng_gap, rng_bp;
  reg [63:0] edge_no, start_edge;
  integer rst_left, sent, recv, violations, spurious, extra, drain_left;
  reg prev_stall, finished;
  reg [OUT_BITS-1:0] prev_data;

  function [31:0] xorshift32;
    input [31:0] x;
    reg [31:0] y;
    begin
      y = x ^ (x << 13);
      y = y ^ (y >> 17);
      xorshift32 = y ^ (y << 5);
    end
  endfunction

  function [31:0] seed_state;  // a nonzero xorshift state from the seed and a per-stream salt
    input [31:0] s;
    input [31:0] salt;
    reg [31:0] y;
    begin
      y = (s * 32'd2654435761) ^ salt;
      if (y == 32'd0) y = salt;
      seed_state = xorshift32(xorshift32(y));
    end
  endfunction

  initial begin
    n_vec = N; gap_pct = GAP_PCT; bp_pct = BP_PCT; seed = SEED; timeout = TIMEOUT; drain = DRAIN;
    in_file = `IN_FILE;
    out_file = `OUT_FILE;
    if ($value$plusargs("n=%d", n_vec)) ;
    if ($value$plusargs("gap_pct=%d", gap_pct)) ;
    if ($value$plusargs("bp_pct=%d", bp_pct)) ;
    if ($value$plusargs("seed=%d", seed)) ;
    if ($value$plusargs("timeout=%d", timeout)) ;
    if ($value$plusargs("drain=%d", drain)) ;
    if ($value$plusargs("in=%s", in_file)) ;
    if ($value$plusargs("out=%s", out_file)) ;
    if (n_vec < 1 || n_vec > N) begin
      $display("tb_stream: ERROR n=%0d is outside 1..N=%0d (rebuild with a larger N)", n_vec, N);
      $finish;
    end
    $readmemh(in_file, mem, 0, n_vec * BEATS - 1);
    fo = $fopen(out_file, "w");
    if (fo == 0) begin
      $display("tb_stream: ERROR cannot open output file %0s", out_file);
      $finish;
    end
    rng_gap = seed_state(seed, 32'h9E3779B9);
    rng_bp = seed_state(seed, 32'h85EBCA6B);
    clk = 1'b0; rst = 1'b1; in_valid = 1'b0; out_ready = 1'b0; in_data = {IN_BITS{1'b0}};
    edge_no = 64'd0; start_edge = 64'd0; rst_left = RESET_CYCLES;
    sent = 0; recv = 0; violations = 0; spurious = 0; extra = 0; drain_left = -1;
    prev_stall = 1'b0; finished = 1'b0; prev_data = {OUT_BITS{1'b0}};
  end

  always #5 clk = ~clk;

  task finish_run;
    input integer timed_out;
    begin
      finished = 1'b1;
      $fwrite(fo, "# done cycles=%0d sent=%0d received=%0d violations=%0d spurious=%0d extra=%0d timeout=%0d\n",
              edge_no - start_edge, sent / BEATS, recv, violations, spurious, extra, timed_out);
      $fclose(fo);
      $display("tb_stream: cycles=%0d sent=%0d received=%0d violations=%0d spurious=%0d extra=%0d timeout=%0d",
               edge_no - start_edge, sent / BEATS, recv, violations, spurious, extra, timed_out);
      $finish;
    end
  endtask

  // Everything happens at the rising edge: DUT outputs are read as they were before the edge (the
  // values the DUT samples too), signals to the DUT change through non-blocking assignments.
  // Bookkeeping variables are only read inside this block, so blocking assignments are intended.
  /* verilator lint_off BLKSEQ */
  always @(posedge clk) begin
    edge_no = edge_no + 64'd1;
    if (finished) begin
      // $finish was called; nothing more to do
    end else if (rst_left > 0) begin
      rst_left = rst_left - 1;
      if (rst_left == 0) rst <= 1'b0;
      start_edge = edge_no;
    end else begin
      // ---- input side: record the accept edge, then present the next vector (or idle)
      if (in_valid && in_ready === 1'b1) begin
        if (sent % BEATS == 0) acc_edge[sent / BEATS] = edge_no;  // a vector's first transfer
        sent = sent + 1;
      end
      if (!in_valid || in_ready === 1'b1) begin
        if (sent < n_vec * BEATS) begin
          rng_gap = xorshift32(rng_gap);
          if ((rng_gap % 32'd100) < gap_pct) begin
            in_valid <= 1'b0;
          end else begin
            in_valid <= 1'b1;
            in_data <= mem[sent];
          end
        end else begin
          in_valid <= 1'b0;
        end
      end
      // ---- output side: protocol checks, transfers
      if (out_valid !== 1'b0 && out_valid !== 1'b1) violations = violations + 1;
      if (prev_stall && (out_valid !== 1'b1 || out_data !== prev_data)) violations = violations + 1;
      prev_stall = (out_valid === 1'b1) && !out_ready;
      prev_data = out_data;
      if (out_valid === 1'b1 && out_ready) begin
        if (recv >= n_vec) begin
          extra = extra + 1;
        end else if (recv * BEATS >= sent) begin
          spurious = spurious + 1;
          recv = recv + 1;
        end else begin
          $fwrite(fo, "%h %0d %0d\n", out_data, acc_edge[recv], edge_no);
          recv = recv + 1;
        end
      end
      // ---- sink: back-pressure until the last output, then a drain tail with out_ready high
      if (recv < n_vec) begin
        rng_bp = xorshift32(rng_bp);
        out_ready <= !((rng_bp % 32'd100) < bp_pct);
      end else begin
        out_ready <= 1'b1;
        if (drain_left < 0) drain_left = drain;
        // a streaming core may answer before an image's last pixels are sent: send them all first
        if (drain_left == 0 && sent >= n_vec * BEATS) finish_run(0);
        if (drain_left > 0) drain_left = drain_left - 1;
      end
      if (!finished && edge_no - start_edge >= {32'd0, timeout}) begin
        $display("tb_stream: TIMEOUT after %0d cycles (%0d of %0d outputs)", edge_no - start_edge, recv, n_vec);
        finish_run(1);
      end
    end
  end
  /* verilator lint_on BLKSEQ */
endmodule
`default_nettype wire
