`default_nettype none
// fxp_cast: combinational ap_fixed conversion on integer codes, bit-exact with
// codesign.fixedpoint.cast (which tests/test_fixedpoint.py proves equal to ap_fixed).
//
//   din  : W_IN-bit code, value din * 2**-F_IN   (two's complement when SIGNED_IN)
//   dout : W_OUT-bit code, value dout * 2**-F_OUT (two's complement when SIGNED_OUT)
//
// F_IN / F_OUT are fractional bits (= W - I of ap_fixed<W,I>); either may be negative or larger
// than the width. The conversion is done in two steps, as ap_fixed assignment does:
//   1. quantization: SHIFT = F_IN - F_OUT bits are dropped (SHIFT > 0) with rounding mode
//      ROUND, looking at the sign of the source value; SHIFT < 0 appends zeros.
//   2. overflow: the rounded value is brought into the destination range with mode OVERFLOW.
// ROUND   : 0 TRN, 1 TRN_ZERO, 2 RND, 3 RND_ZERO, 4 RND_MIN_INF, 5 RND_INF, 6 RND_CONV
// OVERFLOW: 0 WRAP, 1 SAT, 2 SAT_ZERO, 3 SAT_SYM   (codesign.fixedpoint.QUANT_CODE / OVERFLOW_CODE)
//
// Internal widths cover the worst case (rounding carry); no rounding logic is generated when
// nothing is shifted out or the mode is TRN, and no saturation logic when every rounded value
// fits the destination. Bad parameters stop elaboration in every tool (Verilator, Icarus,
// Yosys) by instantiating a module that does not exist and whose name states the rule.
module fxp_cast #(
    parameter integer W_IN       = 8,
    parameter integer F_IN       = 4,
    parameter integer SIGNED_IN  = 1,
    parameter integer W_OUT      = 8,
    parameter integer F_OUT      = 4,
    parameter integer SIGNED_OUT = 1,
    parameter integer ROUND      = 0,
    parameter integer OVERFLOW   = 0
) (
    input  wire [W_IN-1:0]  din,
    output wire [W_OUT-1:0] dout
);

  // ---------------------------------------------------------------- parameter checks
  generate
    if (W_IN < 1) begin : g_bad_w_in
      fxp_cast_ERROR_W_IN_must_be_at_least_1 u_error ();
    end
    if (W_OUT < 1) begin : g_bad_w_out
      fxp_cast_ERROR_W_OUT_must_be_at_least_1 u_error ();
    end
    if (SIGNED_IN != 0 && SIGNED_IN != 1) begin : g_bad_signed_in
      fxp_cast_ERROR_SIGNED_IN_must_be_0_or_1 u_error ();
    end
    if (SIGNED_OUT != 0 && SIGNED_OUT != 1) begin : g_bad_signed_out
      fxp_cast_ERROR_SIGNED_OUT_must_be_0_or_1 u_error ();
    end
    if (ROUND < 0 || ROUND > 6) begin : g_bad_round
      fxp_cast_ERROR_ROUND_must_be_0_to_6 u_error ();
    end
    if (OVERFLOW < 0 || OVERFLOW > 3) begin : g_bad_overflow
      fxp_cast_ERROR_OVERFLOW_must_be_0_to_3 u_error ();
    end
    if (F_IN - F_OUT > 1024 || F_OUT - F_IN > 1024) begin : g_bad_shift
      fxp_cast_ERROR_F_IN_minus_F_OUT_must_be_within_1024 u_error ();
    end
  endgenerate

  // ---------------------------------------------------------------- widths
  localparam integer SHIFT = F_IN - F_OUT;          // > 0: drop bits (round), < 0: append zeros
  localparam integer WX    = W_IN + ((SIGNED_IN != 0) ? 0 : 1);  // signed view of din
  // Right shift: extend so that at least one bit (the sign) remains above the dropped bits.
  localparam integer WE    = (SHIFT > 0 && SHIFT + 1 > WX) ? SHIFT + 1 : WX;
  localparam integer WFL   = (SHIFT > 0) ? WE - SHIFT : 1;  // floor(x / 2**SHIFT)
  localparam integer RNDING = (SHIFT > 0 && ROUND != 0) ? 1 : 0;
  localparam integer WQ    = (SHIFT > 0) ? WFL + RNDING : ((SHIFT < 0) ? WX - SHIFT : WX);
  localparam integer QW    = (WQ > W_OUT + 1) ? WQ : W_OUT + 1;  // q, sign-extended
  // Every rounded value q fits the destination (then overflow handling is a no-op).
  localparam integer OVF_SYM = (OVERFLOW == 3 && SIGNED_OUT == 1 && W_OUT > 1) ? 1 : 0;
  localparam integer FIT_HI = (SIGNED_OUT != 0) ? ((WQ <= W_OUT) ? 1 : 0) : ((WQ - 1 <= W_OUT) ? 1 : 0);
  localparam integer FIT_LO = (SIGNED_IN == 0) ? 1 : (SIGNED_OUT == 0) ? 0 :
                              ((WQ < W_OUT + 1 - OVF_SYM) ? 1 : 0);
  localparam integer NO_OVF = (OVERFLOW == 0 || (FIT_HI == 1 && FIT_LO == 1)) ? 1 : 0;

  // ---------------------------------------------------------------- signed view of din
  wire [WX-1:0] x;
  generate
    if (SIGNED_IN != 0) begin : g_x_signed
      assign x = din;
    end else begin : g_x_unsigned
      assign x = {1'b0, din};
    end
  endgenerate

  // ---------------------------------------------------------------- 1. quantization
  wire [WQ-1:0] q;
  generate
    if (SHIFT > 0) begin : g_right
      wire neg = x[WX-1];  // sign of the source value
      wire [WE-1:0] xe;
      if (WE > WX) begin : g_ext
        assign xe = {{(WE - WX){neg}}, x};
      end else begin : g_noext
        assign xe = x;
      end
      wire [WFL-1:0] fl = xe[WE-1:SHIFT];  // floor
      if (RNDING == 0) begin : g_trn
        assign q = fl;
        wire unused_dropped = ^{neg, xe[SHIFT-1:0]};  // TRN reads neither the dropped bits nor the sign
      end else begin : g_round
        wire half = xe[SHIFT-1];  // first dropped bit: remainder >= half an LSB
        wire rest;                // any later dropped bit set: remainder is not exactly half
        if (SHIFT >= 2) begin : g_rest
          assign rest = |xe[SHIFT-2:0];
        end else begin : g_norest
          assign rest = 1'b0;
        end
        reg up;
        always @* begin
          case (ROUND)
            1:       up = neg & (half | rest);          // TRN_ZERO: toward zero
            2:       up = half;                         // RND: half up
            3:       up = half & (rest | neg);          // RND_ZERO: half toward zero
            4:       up = half & rest;                  // RND_MIN_INF: half down
            5:       up = half & (rest | ~neg);         // RND_INF: half away from zero
            default: up = half & (rest | fl[0]);        // RND_CONV: half to even
          endcase
        end
        assign q = {fl[WFL-1], fl} + {{WFL{1'b0}}, up};
      end
    end else if (SHIFT < 0) begin : g_left
      assign q = {x, {(-SHIFT){1'b0}}};
    end else begin : g_same
      assign q = x;
    end
  endgenerate

  // ---------------------------------------------------------------- 2. overflow
  wire [QW-1:0] qx;
  generate
    if (QW > WQ) begin : g_qext
      assign qx = {{(QW - WQ){q[WQ-1]}}, q};
    end else begin : g_qnoext
      assign qx = q;
    end
  endgenerate

  generate
    if (NO_OVF == 1) begin : g_wrap
      // WRAP, or the value always fits: keep the low W_OUT bits.
      assign dout = qx[W_OUT-1:0];
      wire unused_high = ^{1'b0, qx[QW-1:W_OUT]};
    end else begin : g_sat
      localparam [W_OUT-1:0] ONES   = {W_OUT{1'b1}};
      localparam [W_OUT-1:0] MAXV   = (SIGNED_OUT != 0) ? (ONES >> 1) : ONES;
      localparam [W_OUT-1:0] MINV   = (SIGNED_OUT != 0) ? ~MAXV : {W_OUT{1'b0}};
      localparam [W_OUT-1:0] ZERO   = {W_OUT{1'b0}};
      localparam [W_OUT-1:0] SYMMIN = MINV | ~(ONES << 1);  // -MAX: min | 1
      localparam [W_OUT-1:0] HIGH   = (OVERFLOW == 2) ? ZERO : MAXV;
      localparam [W_OUT-1:0] LOW    = (OVERFLOW == 2) ? ZERO : ((OVF_SYM == 1) ? SYMMIN : MINV);
      wire qneg = qx[QW-1];
      wire in_range;
      if (SIGNED_OUT != 0) begin : g_rs
        // The bits from the destination's sign bit up are all equal.
        wire [QW-W_OUT:0] top = qx[QW-1:W_OUT-1];
        wire fits = (&top) | ~(|top);
        if (OVF_SYM == 1) begin : g_sym
          // The most negative code is outside the symmetric range.
          wire is_min = qx[W_OUT-1] & ~(|qx[W_OUT-2:0]);
          assign in_range = fits & ~is_min;
        end else begin : g_nosym
          assign in_range = fits;
        end
      end else begin : g_ru
        assign in_range = ~(|qx[QW-1:W_OUT]);
      end
      assign dout = in_range ? qx[W_OUT-1:0] : (qneg ? LOW : HIGH);
    end
  endgenerate

endmodule
`default_nettype wire
