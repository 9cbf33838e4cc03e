`default_nettype none
// fxp_relu: hls4ml's ReLU, dout = (din > 0) ? (res_T)din : 0, bit-exact.
//
// Same parameters as fxp_cast (which does the conversion): din is a W_IN-bit code with F_IN
// fractional bits (two's complement when SIGNED_IN), dout a W_OUT-bit code with F_OUT fractional
// bits, converted with quantization mode ROUND and overflow mode OVERFLOW (encodings in
// rtl/fxp_cast.v). Inputs that are zero or negative give code 0.
module fxp_relu #(
    parameter integer W_IN       = 8,
    parameter integer F_IN       = 4,
    parameter integer SIGNED_IN  = 1,
    parameter integer W_OUT      = 8,
    parameter integer F_OUT      = 4,
    parameter integer SIGNED_OUT = 0,
    parameter integer ROUND      = 0,
    parameter integer OVERFLOW   = 0
) (
    input  wire [W_IN-1:0]  din,
    output wire [W_OUT-1:0] dout
);

  // Parameters are checked inside fxp_cast (elaboration stops on a bad value).
  wire [W_OUT-1:0] cast_out;
  fxp_cast #(
      .W_IN(W_IN), .F_IN(F_IN), .SIGNED_IN(SIGNED_IN),
      .W_OUT(W_OUT), .F_OUT(F_OUT), .SIGNED_OUT(SIGNED_OUT),
      .ROUND(ROUND), .OVERFLOW(OVERFLOW)
  ) u_cast (
      .din (din),
      .dout(cast_out)
  );

  // A zero input converts to code 0 in every mode, so "din > 0" reduces to "din is not negative":
  // the sign bit alone selects, with no W_IN-input OR (which cost about as many LUTs as the cast).
  wire keep;
  generate
    if (SIGNED_IN != 0) begin : g_signed
      assign keep = ~din[W_IN-1];
    end else begin : g_unsigned
      assign keep = 1'b1;
    end
  endgenerate

  assign dout = keep ? cast_out : {W_OUT{1'b0}};

endmodule
`default_nettype wire
