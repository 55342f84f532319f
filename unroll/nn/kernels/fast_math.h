// Fast math the compiled CPU kernels share (lstm_cpu.cpp, min_rnn_cpu.cpp, word2vec_cpu.cpp):
// one copy of each trick. A kernel includes it as "fast_math.h" (next to it); build.py puts
// this file's text in every kernel's cache key, so a change here rebuilds them all.
#pragma once

#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

// The activations must inline into the loops for those to vectorize.
#define UNROLL_INLINE inline __attribute__((always_inline))

namespace unroll_fast {

// exp for float as a polynomial the compiler vectorizes (Cephes expf: range reduction by
// ln 2, degree-6 polynomial, scale by 2^n through the exponent bits); relative error < 2e-7
// on [-87, 87], where the argument is clamped. float64 keeps libm.
UNROLL_INLINE float exp_poly(float x) {
  x = std::min(std::max(x, -87.0f), 87.0f);
  const float shifter = 12582912.0f;  // 1.5 · 2^23: adding it rounds to an integer
  const float t = x * 1.44269504088896341f + shifter;
  const float n = t - shifter;  // round(x · log2 e)
  float r = x - n * 0.693359375f;  // x − n·ln 2, ln 2 split into a short and a tiny part
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;  // e^r
  int32_t bits;
  std::memcpy(&bits, &t, sizeof bits);
  bits = (bits - 0x4B400000 + 127) << 23;  // 2^n
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}
UNROLL_INLINE double exp_poly(double x) { return std::exp(x); }

// Flush denormals to zero (FTZ) and read them as zero (DAZ) while an object of this lives,
// restored after; the state is per thread, so a kernel makes one in its caller's thread (whose
// GEMMs run on it with one thread) and one in each parallel chunk. Over hundreds of steps a
// gradient carried back through forget/update gates decays into the denormal range, where
// every x86 multiply takes a ~100-cycle assist (benchmarks/denormals.py: a peephole LSTM's
// forward + backward at T = 784 went from 1.62 s to 0.55 s). Values below ~1e-38 (float)
// change nothing that matters.
struct FlushDenormals {
#if defined(__SSE__)
  unsigned int saved = _mm_getcsr();
  FlushDenormals() { _mm_setcsr(saved | 0x8040); }  // FTZ (bit 15) | DAZ (bit 6)
  ~FlushDenormals() { _mm_setcsr(saved); }
#endif
};

}  // namespace unroll_fast
