`default_nettype none
// skid_buffer: 2-entry register slice for a valid/ready (AXI4-Stream) channel.
//
// Every output is a register: out_valid/out_data come from the main register, in_ready from its
// own register, so neither the data path nor the ready path is combinational between the two
// sides. Full throughput: with out_ready held high a word passes every cycle. When the sink
// stalls, the word accepted in that cycle (in_ready was already high) lands in the skid register
// and in_ready drops on the next edge. Latency is one cycle. Reset is synchronous, active high;
// in_ready is low during reset and rises on the first edge after it.
module skid_buffer #(
    parameter integer W = 8
) (
    input  wire         clk,
    input  wire         rst,
    input  wire         in_valid,
    output wire         in_ready,
    input  wire [W-1:0] in_data,
    output wire         out_valid,
    input  wire         out_ready,
    output wire [W-1:0] out_data
);

  generate
    if (W < 1) begin : g_bad_w
      skid_buffer_ERROR_W_must_be_at_least_1 u_error ();
    end
  endgenerate

  reg         main_valid;
  reg [W-1:0] main_data;
  reg         skid_valid;
  reg [W-1:0] skid_data;
  reg         ready_r;

  wire in_fire   = in_valid & ready_r;
  wire main_free = ~main_valid | out_ready;  // the main register is empty or is read this cycle

  // Next state of the skid register (in_ready is its complement, registered).
  wire skid_valid_next = main_free ? 1'b0 : (skid_valid | in_fire);

  always @(posedge clk) begin
    if (rst) begin
      main_valid <= 1'b0;
      skid_valid <= 1'b0;
      ready_r    <= 1'b0;
    end else begin
      if (main_free) begin
        // Refill the main register: from the skid register first (then in_ready was low).
        main_valid <= skid_valid | in_fire;
      end
      skid_valid <= skid_valid_next;
      ready_r    <= ~skid_valid_next;
    end
  end

  // Data registers need no reset: they are only read while their valid bit is set.
  always @(posedge clk) begin
    if (main_free) begin
      main_data <= skid_valid ? skid_data : in_data;
    end
    if (~main_free & ~skid_valid & in_fire) begin
      skid_data <= in_data;
    end
  end

  assign in_ready  = ready_r;
  assign out_valid = main_valid;
  assign out_data  = main_data;

endmodule
`default_nettype wire
