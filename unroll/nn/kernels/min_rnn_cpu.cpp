// CPU kernel of minGRU / minLSTM (unroll/nn/cells/min_rnn.py), compiled on first use by
// unroll/nn/kernels/scan_cpu.py. The same math as `mingru_step` / `minlstm_step`, fused: the gate
// activations, g() and the recurrence h_t = a_t·h_{t-1} + b_t in ONE pass over the (T, B, H)
// elements (forward), and one reverse pass for the gradients (backward), instead of ~40 ATen
// ops. The recurrence is sequential in t, vectorized over the H units of each row: on one CPU
// thread a parallel scan only adds work (log-space scans do ~3× the passes of this loop);
// benchmarks/parallel_rnn.py measures both.
//
// Layout (time-major, contiguous; nb = 2 blocks (z, h̃) for minGRU, 3 blocks (f, i, h̃) for
// minLSTM; the input projection and bias are already in XP):
//   XP  (T, B, nb·H)  pre-activations          Y   (T, B, H)  h_t
//   h0  (B, H)                                  dY  (T, B, H)  dL/dh_t (from y and the final state)
//   dXP (T, B, nb·H)  dL/d pre-activations     dh0 (B, H)
// The backward recomputes the gates from XP (cheap) and reads h_{t-1} from Y (or h0).

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "fast_math.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace {

using unroll_fast::FlushDenormals;

template <typename T>
UNROLL_INLINE T sigmoid(T x) {
  return T(1) / (T(1) + unroll_fast::exp_poly(-x));
}

// g(v) = v + ½ (v ≥ 0), σ(v) (v < 0); and g'(v) = 1, σ(v)(1 − σ(v)).
template <typename T>
UNROLL_INLINE T g(T v) {
  const T s = sigmoid(v);  // both sides computed: a select, not a branch (vectorizes)
  return v >= T(0) ? v + T(0.5) : s;
}
template <typename T>
UNROLL_INLINE void g_and_grad(T v, T& gv, T& dg) {  // one sigmoid for both
  const T s = sigmoid(v);
  gv = v >= T(0) ? v + T(0.5) : s;
  dg = v >= T(0) ? T(1) : s * (T(1) - s);
}

template <typename T>
void forward_impl(const T* __restrict xp, const T* __restrict h0, T* __restrict y, int64_t steps,
                  int64_t batch, int64_t H, bool lstm) {
  const int64_t nb = lstm ? 3 : 2, G = nb * H;
  for (int64_t t = 0; t < steps; ++t) {
    for (int64_t b = 0; b < batch; ++b) {
      const T* __restrict k = xp + (t * batch + b) * G;
      const T* __restrict hp = t ? y + ((t - 1) * batch + b) * H : h0 + b * H;
      T* __restrict h = y + (t * batch + b) * H;
      if (lstm) {
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          const T f = sigmoid(k[j]), i = sigmoid(k[H + j]), ht = g(k[2 * H + j]);
          h[j] = (f * hp[j] + i * ht) / (f + i);  // f'·h_{t-1} + i'·h̃
        }
      } else {
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          const T z = sigmoid(k[j]), ht = g(k[H + j]);
          h[j] = hp[j] + z * (ht - hp[j]);  // (1 − z)·h_{t-1} + z·h̃
        }
      }
    }
  }
}

template <typename T>
void backward_impl(const T* __restrict xp, const T* __restrict h0, const T* __restrict y,
                   const T* __restrict dy, T* __restrict dxp, T* __restrict dh, int64_t steps,
                   int64_t batch, int64_t H, bool lstm) {
  // dh (B, H): dL/dh_t carried backwards; starts at zero, ends as dL/dh_0.
  const int64_t nb = lstm ? 3 : 2, G = nb * H;
  for (int64_t t = steps - 1; t >= 0; --t) {
    for (int64_t b = 0; b < batch; ++b) {
      const T* __restrict k = xp + (t * batch + b) * G;
      const T* __restrict hp = t ? y + ((t - 1) * batch + b) * H : h0 + b * H;
      const T* __restrict h = y + (t * batch + b) * H;
      const T* __restrict d_out = dy + (t * batch + b) * H;
      T* __restrict dk = dxp + (t * batch + b) * G;
      T* __restrict d = dh + b * H;
      if (lstm) {
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          const T f = sigmoid(k[j]), i = sigmoid(k[H + j]);
          T ht, dg;
          g_and_grad(k[2 * H + j], ht, dg);
          const T s = f + i, dt = (d[j] + d_out[j]) / s;
          // h = (f·hp + i·h̃)/s: ∂h/∂f = (hp − h)/s, ∂h/∂i = (h̃ − h)/s, ∂h/∂h̃ = i/s
          dk[j] = dt * (hp[j] - h[j]) * f * (T(1) - f);
          dk[H + j] = dt * (ht - h[j]) * i * (T(1) - i);
          dk[2 * H + j] = dt * i * dg;
          d[j] = dt * f;
        }
      } else {
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          const T z = sigmoid(k[j]);
          T ht, dg;
          g_and_grad(k[H + j], ht, dg);
          const T dt = d[j] + d_out[j];
          dk[j] = dt * (ht - hp[j]) * z * (T(1) - z);
          dk[H + j] = dt * z * dg;
          d[j] = dt * (T(1) - z);
        }
      }
    }
  }
}

at::Tensor min_forward(const at::Tensor& xp, const at::Tensor& h0, bool lstm) {
  TORCH_CHECK(xp.dim() == 3 && h0.dim() == 2, "min_rnn_cpu.forward: XP (T, B, G), h0 (B, H)");
  auto x = xp.contiguous(), h = h0.contiguous();
  auto y = at::empty({x.size(0), x.size(1), h.size(1)}, x.options());
  FlushDenormals ftz;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "min_forward", [&] {
    forward_impl<scalar_t>(x.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(),
                           y.data_ptr<scalar_t>(), x.size(0), x.size(1), h.size(1), lstm);
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor> min_backward(const at::Tensor& xp, const at::Tensor& h0,
                                                const at::Tensor& y, const at::Tensor& dy,
                                                bool lstm) {
  auto x = xp.contiguous(), h = h0.contiguous(), yc = y.contiguous(), d = dy.contiguous();
  auto dxp = at::empty_like(x);
  auto dh = at::zeros_like(h);
  FlushDenormals ftz;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "min_backward", [&] {
    backward_impl<scalar_t>(x.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(),
                            yc.data_ptr<scalar_t>(), d.data_ptr<scalar_t>(),
                            dxp.data_ptr<scalar_t>(), dh.data_ptr<scalar_t>(), x.size(0),
                            x.size(1), h.size(1), lstm);
  });
  return {dxp, dh};
}

}  // namespace

TORCH_LIBRARY(unroll_min_rnn_cpu, m) {
  m.def("forward(Tensor xp, Tensor h0, bool lstm) -> Tensor");
  m.def("backward(Tensor xp, Tensor h0, Tensor y, Tensor dy, bool lstm) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(unroll_min_rnn_cpu, CPU, m) {
  m.impl("forward", &min_forward);
  m.impl("backward", &min_backward);
}
