// Reference harness: real ap_fixed conversions (hls4ml's bundled Xilinx ap_types headers).
//
// tests/test_fixedpoint.py writes "apfixed_cases.inc" (one
// `if (selected(argc, argv, id, by_default)) run<Src, Dst, W_SRC, W_DST, SRC_SIGNED>(id);` line per
// source type / destination type / Q mode / O mode combination), compiles this file with
// -I <ap_types> -I <dir of the .inc>, and runs it. For every selected combination the program
// converts EVERY code of the source type with a plain ap_fixed assignment (`Dst y = x;`, what
// hls4ml's `(res_T)x` does) and prints one line: the id, then the destination's raw bits
// (unsigned) per source code, in increasing source-code order. Without arguments it runs the
// cases marked by_default; with arguments, exactly the ids named.
#include <cstdio>
#include <cstring>

#include "ap_fixed.h"

template <class Src, class Dst, int W_SRC, int W_DST, bool SRC_SIGNED>
static void run(const char *id) {
  const long long lo = SRC_SIGNED ? -(1LL << (W_SRC - 1)) : 0LL;
  const long long hi = SRC_SIGNED ? (1LL << (W_SRC - 1)) - 1 : (1LL << W_SRC) - 1;
  std::printf("%s", id);
  for (long long c = lo; c <= hi; ++c) {
    Src x;
    x.setBits((ap_ulong)c);  // raw code, truncated to W_SRC bits
    Dst y = x;
    unsigned long long raw = y.range(W_DST - 1, 0).to_uint64();
    std::printf(" %llu", raw);
  }
  std::printf("\n");
  std::fflush(stdout);
}

static bool selected(int argc, char **argv, const char *id, bool by_default) {
  if (argc < 2) return by_default;
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], id) == 0) return true;
  return false;
}

int main(int argc, char **argv) {
#include "apfixed_cases.inc"
  return 0;
}
