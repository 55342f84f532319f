// CPU time loops of the fused LSTM (unroll/nn/kernels/lstm_fused.py), compiled on first use by
// unroll/nn/kernels/lstm_cpu.py. Same math and the same saved buffers as the Python loops there:
// a time step is one GEMM (ATen's addmm: MKL/oneDNN) and ONE pass over the (B, H) elements that
// does all the gate math, instead of ~10 ATen ops called from Python.
//
// Vector width: the gate-math loops (`omp simd`, restrict pointers) are vectorized by the
// compiler for the target it is given: with -march=native on an AVX-512 CPU, 16 floats (zmm)
// per instruction, 4 (SSE2) in the portable x86-64 build. The GEMMs are the libraries' own.
//
// Layout (time-major, contiguous; G = nb·H, nb = 4 gate blocks i, f, g, o or 3 blocks f, g, o
// when coupled; the input projection and bias are already in A):
//   A   (T, B, G)  in: pre-activations; out: activations i, f, g = tanh(·), o
//   Cs  (T, B, H)  c_t      TC (T, B, H) tanh(c_t)      Y (T, B, H) h_t
//   dG  (T, B, G)  gradients of the gate pre-activations
// Peepholes: peep_in (nb − 2, H) = rows (ci, cf), or (cf) when coupled; peep_o (H).
// Recurrent dropout masks (B, H), drawn once per sequence by the layer: mask_h (Gal &
// Ghahramani 2016) multiplies h_{t-1} where it enters the gates, W_hh·(m_h ⊙ h_{t-1});
// mask_g (Semeniuta et al. 2016) the cell update, c_t = f c_{t-1} + i (m_g ⊙ g). A keeps g.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include "fast_math.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

namespace {

using unroll_fast::exp_poly;
using unroll_fast::FlushDenormals;

UNROLL_INLINE float sigmoid(float x) { return 1.0f / (1.0f + exp_poly(-x)); }
UNROLL_INLINE float tanh_(float x) { return 2.0f / (1.0f + exp_poly(-2.0f * x)) - 1.0f; }
UNROLL_INLINE double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }  // float64: libm
UNROLL_INLINE double tanh_(double x) { return std::tanh(x); }

// The peephole weights as raw pointers (nullptr where absent): i and f see c_{t-1}, o sees c_t.
template <typename T>
struct Peepholes {
  const T *i = nullptr, *f = nullptr, *o = nullptr;
  Peepholes(const c10::optional<at::Tensor>& peep_in, const c10::optional<at::Tensor>& peep_o,
            bool coupled) {
    if (!peep_in) return;
    const T* rows = peep_in->data_ptr<T>();  // (ci, cf), or (cf) when coupled
    i = coupled ? nullptr : rows;
    f = coupled ? rows : rows + peep_in->size(-1);
    o = peep_o->data_ptr<T>();
  }
};

// f(std::true_type{}) or f(std::false_type{}): a runtime flag as a compile-time constant.
template <typename F>
auto with_flag(bool b, F f) {
  return b ? f(std::true_type{}) : f(std::false_type{});
}

// pick(peephole, coupled, drop_g, zone) as compile-time constants: 16 step instantiations.
template <typename Pick>
auto by_variant(bool peephole, bool coupled, bool drop_g, bool zone, Pick pick) {
  return with_flag(peephole, [&](auto p) {
    return with_flag(coupled, [&](auto c) {
      return with_flag(drop_g, [&](auto d) {
        return with_flag(zone, [&](auto z) { return pick(p, c, d, z); });
      });
    });
  });
}

// Batch rows per thread: a step's gate math runs on one thread unless it has more than ~32k
// units (B·H), where splitting it over threads pays for their start (PTB Small/Medium: one).
inline int64_t rows_per_task(int64_t H) { return std::max<int64_t>(1, 32768 / H); }

// What a step reads besides the gates, as (B, H) row-major arrays or (H) vectors; nullptr where
// the option is off. pi, pf, po: peepholes; mg: Semeniuta's mask; zc, zh: this step's zoneout
// z (1 = keep the previous value); hp: h_{t-1} (zoneout's h mixes it in); carry (backward,
// zoneout): in, the part of dL/dh_t that came through h_{t+1} = z ⊙ h_t + …; out, z_t ⊙ dL/dh_t.
template <typename T>
struct StepExtras {
  const T *pi = nullptr, *pf = nullptr, *po = nullptr, *mg = nullptr;
  const T *zc = nullptr, *zh = nullptr, *hp = nullptr;
  T* carry = nullptr;
};

template <typename T>
const T* row_of(const T* p, int64_t b, int64_t H) {
  return p ? p + b * H : nullptr;
}

// The gate math of one batch row over its H units. Each array is its own parameter so that
// `__restrict` lets the compiler vectorize the loop; restrict is lost (and the loop stays
// scalar, ~10x slower) on local pointers and when the function is inlined, hence noinline.
// Zoneout (ZONE, Krueger et al. 2017): c̃, h̃ are the plain update (o's peephole sees c̃);
// c_t = zc c_{t-1} + (1 − zc) c̃, h_t = zh h_{t-1} + (1 − zh) h̃; TC holds tanh(c̃).
template <typename T, bool PEEP, bool COUPLED, bool DROP_G, bool ZONE>
__attribute__((noinline)) void forward_row(T* __restrict ai, T* __restrict af, T* __restrict ag, T* __restrict ao,
                        const T* __restrict cp, T* __restrict c, T* __restrict tc,
                        T* __restrict h, const T* __restrict pi, const T* __restrict pf,
                        const T* __restrict po, const T* __restrict mg,
                        const T* __restrict zc, const T* __restrict zh,
                        const T* __restrict hp, int64_t H) {
#pragma omp simd  // with -fopenmp-simd; no OpenMP runtime involved
  for (int64_t j = 0; j < H; ++j) {
    const T cprev = cp[j];
    T f_pre = af[j];
    T i_pre = COUPLED ? T(0) : ai[j];
    if (PEEP) {  // i and f see c_{t-1}
      f_pre += pf[j] * cprev;
      if (!COUPLED) i_pre += pi[j] * cprev;
    }
    const T f = sigmoid(f_pre);
    const T i = COUPLED ? T(1) - f : sigmoid(i_pre);  // coupled: i = 1 − f
    const T g = tanh_(ag[j]);
    const T cn = f * cprev + i * (DROP_G ? mg[j] * g : g);  // Semeniuta: m_g ⊙ g
    T o_pre = ao[j];
    if (PEEP) o_pre += po[j] * cn;  // o sees c_t (c̃ with zoneout)
    const T o = sigmoid(o_pre);
    const T tcn = tanh_(cn);
    if (!COUPLED) ai[j] = i;
    af[j] = f;
    ag[j] = g;
    ao[j] = o;
    tc[j] = tcn;
    if (ZONE) {
      c[j] = zc[j] * cprev + (T(1) - zc[j]) * cn;
      h[j] = zh[j] * hp[j] + (T(1) - zh[j]) * (o * tcn);
    } else {
      c[j] = cn;
      h[j] = o * tcn;
    }
  }
}

// One step, all gates: a (B, G) pre-activations -> activations; c_{t-1} -> c_t, tanh c_t, h_t.
template <typename T, bool PEEP, bool COUPLED, bool DROP_G, bool ZONE>
void forward_step(T* a, const T* c_prev, T* c, T* tc, T* h, const StepExtras<T>& e, int64_t B,
                  int64_t H) {
  constexpr int64_t nb = COUPLED ? 3 : 4;
  at::parallel_for(0, B, rows_per_task(H), [&](int64_t begin, int64_t end) {
    FlushDenormals ftz;
    for (int64_t b = begin; b < end; ++b) {
      T* row = a + b * nb * H;
      T* af = COUPLED ? row : row + H;
      forward_row<T, PEEP, COUPLED, DROP_G, ZONE>(
          COUPLED ? nullptr : row, af, af + H, af + 2 * H, c_prev + b * H, c + b * H, tc + b * H,
          h + b * H, e.pi, e.pf, e.po, row_of(e.mg, b, H), row_of(e.zc, b, H),
          row_of(e.zh, b, H), row_of(e.hp, b, H), H);
    }
  });
}

template <typename T, bool PEEP, bool COUPLED, bool DROP_G, bool ZONE>
__attribute__((noinline)) void backward_row(const T* __restrict ai, const T* __restrict af, const T* __restrict ag,
                         const T* __restrict ao, const T* __restrict cp,
                         const T* __restrict tc, const T* __restrict dh, T* __restrict dc,
                         T* __restrict dgi, T* __restrict dgf, T* __restrict dgg,
                         T* __restrict dgo, const T* __restrict pi, const T* __restrict pf,
                         const T* __restrict po, const T* __restrict mg,
                         const T* __restrict zc, const T* __restrict zh,
                         T* __restrict carry, int64_t H) {
#pragma omp simd  // with -fopenmp-simd; no OpenMP runtime involved
  for (int64_t j = 0; j < H; ++j) {
    const T o = ao[j], tcv = tc[j];
    T dhv = dh[j];
    T dc_keep = T(0);  // zoneout: the part of dL/dc_t that goes straight to c_{t-1}
    T dcv = dc[j];
    if (ZONE) {
      dhv += carry[j];  // through h_{t+1}'s kept units
      carry[j] = zh[j] * dhv;
      dhv *= T(1) - zh[j];  // dL/dh̃_t
      dc_keep = zc[j] * dcv;
      dcv *= T(1) - zc[j];  // dL/dc̃_t from later steps
    }
    const T d_o = dhv * tcv * o * (T(1) - o);  // through h = o · tanh(c)
    dcv += dhv * o * (T(1) - tcv * tcv);
    if (PEEP) dcv += d_o * po[j];
    const T f = af[j], g = ag[j], cprev = cp[j];
    const T m = DROP_G ? mg[j] : T(1);  // Semeniuta: c sees m_g ⊙ g
    const T gm = DROP_G ? m * g : g;
    const T d_f = COUPLED ? dcv * (cprev - gm) * f * (T(1) - f)  // c = gm + f (c_{t-1} − gm)
                          : dcv * cprev * f * (T(1) - f);
    T dcp = dcv * f + dc_keep;
    if (COUPLED) {
      dgg[j] = dcv * (T(1) - f) * m * (T(1) - g * g);
    } else {
      const T i = ai[j];
      const T d_i = dcv * gm * i * (T(1) - i);
      dgi[j] = d_i;
      dgg[j] = dcv * i * m * (T(1) - g * g);
      if (PEEP) dcp += d_i * pi[j];
    }
    if (PEEP) dcp += d_f * pf[j];
    dgf[j] = d_f;
    dgo[j] = d_o;
    dc[j] = dcp;
  }
}

// One step back: dh (B, H) = dL/dh_t, dc (B, H) in: dL/dc_t from later steps, out: dL/dc_{t-1};
// writes dg (B, G), the gradients of this step's gate pre-activations.
template <typename T, bool PEEP, bool COUPLED, bool DROP_G, bool ZONE>
void backward_step(const T* a, const T* c_prev, const T* tc, const T* dh, T* dc, T* dg,
                   const StepExtras<T>& e, int64_t B, int64_t H) {
  constexpr int64_t nb = COUPLED ? 3 : 4;
  at::parallel_for(0, B, rows_per_task(H), [&](int64_t begin, int64_t end) {
    FlushDenormals ftz;
    for (int64_t b = begin; b < end; ++b) {
      const T* row = a + b * nb * H;
      const T* af = COUPLED ? row : row + H;
      T* drow = dg + b * nb * H;
      T* dgf = COUPLED ? drow : drow + H;
      backward_row<T, PEEP, COUPLED, DROP_G, ZONE>(
          COUPLED ? nullptr : row, af, af + H, af + 2 * H, c_prev + b * H, tc + b * H,
          dh + b * H, dc + b * H, COUPLED ? nullptr : drow, dgf, dgf + H, dgf + 2 * H, e.pi, e.pf,
          e.po, row_of(e.mg, b, H), row_of(e.zc, b, H), row_of(e.zh, b, H),
          e.carry ? e.carry + b * H : nullptr, H);
    }
  });
}

// v @ Wᵀ through oneDNN with W prepacked by `mkldnn::_reorder_linear_weight` (Python side:
// gemm.onednn_packed_weight, which falls back to addmm where packing does not pay).
at::Tensor packed_linear(const at::Tensor& v, const at::Tensor& packed) {
  static const c10::OperatorHandle op =
      c10::Dispatcher::singleton().findSchemaOrThrow("mkldnn::_linear_pointwise", "");
  std::vector<c10::IValue> stack{v, packed, c10::IValue(), std::string("none"),
                                 c10::List<std::optional<c10::Scalar>>(), std::string("")};
  op.callBoxed(&stack);
  return stack[0].toTensor();
}

// (R, C) -> its transpose (C, R), contiguous, in 8×8 tiles (larger ones thrash the TLB at these
// strides): ~1.5-3x faster than ATen's strided copy at (2600, 650) on an AMD EPYC. One thread:
// a second one only contends for the page faults of the fresh output.
template <typename T>
__attribute__((noinline)) void transpose_tiles(const T* __restrict s, T* __restrict o, int64_t R,
                                               int64_t C) {
  constexpr int64_t tile = 8;
  for (int64_t r0 = 0; r0 < R; r0 += tile) {
    const int64_t r_end = std::min(R, r0 + tile);
    for (int64_t c0 = 0; c0 < C; c0 += tile) {
      const int64_t c_end = std::min(C, c0 + tile);
      for (int64_t c = c0; c < c_end; ++c)
        for (int64_t r = r0; r < r_end; ++r) o[c * R + r] = s[r * C + c];
    }
  }
}

at::Tensor transpose(const at::Tensor& w) {
  TORCH_CHECK(w.dim() == 2, "lstm_cpu.transpose: expected a matrix, got ", w.dim(), " dims");
  const at::Tensor src = w.contiguous();
  at::Tensor out = at::empty({src.size(1), src.size(0)}, src.options());
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "transpose", [&] {
    transpose_tiles(src.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), src.size(0), src.size(1));
  });
  return out;
}

// The activations as the loops compute them, for the tests: (sigmoid(x), tanh(x)).
std::tuple<at::Tensor, at::Tensor> activations(const at::Tensor& x) {
  const at::Tensor xc = x.contiguous();
  at::Tensor sig = at::empty_like(xc), th = at::empty_like(xc);
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "activations", [&] {
    const scalar_t* in = xc.data_ptr<scalar_t>();
    scalar_t* s = sig.data_ptr<scalar_t>();
    scalar_t* t = th.data_ptr<scalar_t>();
    for (int64_t k = 0; k < xc.numel(); ++k) {
      s[k] = sigmoid(in[k]);
      t[k] = tanh_(in[k]);
    }
  });
  return {sig, th};
}

void check(const at::Tensor& t, const char* name, const at::Tensor& like) {
  TORCH_CHECK(t.device().is_cpu() && t.is_contiguous() && t.scalar_type() == like.scalar_type(),
              "lstm_cpu: ", name, " must be a contiguous CPU tensor of dtype ",
              like.scalar_type());
}

// recurrent = false skips the recurrent GEMMs (as if w_hh were 0): the gate math alone, which
// benchmarks/lstm_cpu_profile.py times against the whole loop.
void lstm_forward(at::Tensor A, const at::Tensor& h0, const at::Tensor& c0,
                  const at::Tensor& w_hh, const c10::optional<at::Tensor>& w_packed,
                  const c10::optional<at::Tensor>& peep_in,
                  const c10::optional<at::Tensor>& peep_o, at::Tensor Cs, at::Tensor TC,
                  at::Tensor Y, bool recurrent, const c10::optional<at::Tensor>& mask_h,
                  const c10::optional<at::Tensor>& mask_g,
                  const c10::optional<at::Tensor>& keep_c,
                  const c10::optional<at::Tensor>& keep_h) {
  const int64_t steps = A.size(0), B = A.size(1), G = A.size(2), H = h0.size(1);
  const bool coupled = G == 3 * H;
  TORCH_CHECK(coupled || G == 4 * H, "lstm_cpu: A must have 3H or 4H gate columns");
  for (const auto& [t, name] : {std::pair{A, "A"}, {h0, "h0"}, {c0, "c0"}, {w_hh, "w_hh"},
                                {Cs, "Cs"}, {TC, "TC"}, {Y, "Y"}})
    check(t, name, A);
  TORCH_CHECK(peep_in.has_value() == peep_o.has_value(), "lstm_cpu: peep_in without peep_o");
  if (peep_in) check(*peep_in, "peep_in", A), check(*peep_o, "peep_o", A);
  if (mask_h) check(*mask_h, "mask_h", A);
  if (mask_g) check(*mask_g, "mask_g", A);
  TORCH_CHECK(keep_c.has_value() == keep_h.has_value(), "lstm_cpu: keep_c without keep_h");
  if (keep_c) check(*keep_c, "keep_c", A), check(*keep_h, "keep_h", A);
  const auto w_t = w_hh.t();
  at::Tensor h_in = mask_h ? at::empty_like(h0) : at::Tensor();  // m_h ⊙ h_{t-1}
  AT_DISPATCH_FLOATING_TYPES(A.scalar_type(), "lstm_forward", [&] {
    FlushDenormals ftz;
    using T = scalar_t;
    const Peepholes<T> p(peep_in, peep_o, coupled);
    StepExtras<T> e;
    e.pi = p.i, e.pf = p.f, e.po = p.o;
    e.mg = mask_g ? mask_g->data_ptr<T>() : nullptr;
    const T* zc = keep_c ? keep_c->data_ptr<T>() : nullptr;
    const T* zh = keep_h ? keep_h->data_ptr<T>() : nullptr;
    const auto step = by_variant(
        peep_in.has_value(), coupled, mask_g.has_value(), keep_c.has_value(),
        [](auto peep, auto cpl, auto drop, auto zone) {
          return &forward_step<T, decltype(peep)::value, decltype(cpl)::value,
                               decltype(drop)::value, decltype(zone)::value>;
        });
    // Per-step tensors (for the GEMMs) made once; the gate math gets raw pointers.
    const std::vector<at::Tensor> a_t = A.unbind(0), y_t = Y.unbind(0);  // (B, G), (B, H)
    T* a = A.data_ptr<T>();
    T *c = Cs.data_ptr<T>(), *tc = TC.data_ptr<T>(), *y = Y.data_ptr<T>();
    const int64_t BG = B * G, BH = B * H;
    for (int64_t t = 0; t < steps; ++t) {
      const at::Tensor& h_prev = t == 0 ? h0 : y_t[t - 1];
      if (recurrent && mask_h) at::mul_out(h_in, h_prev, *mask_h);  // Gal
      const at::Tensor& h = mask_h ? h_in : h_prev;
      if (recurrent && w_packed) {  // a_t += h_{t-1} · W_hhᵀ
        a_t[t].add_(packed_linear(h, *w_packed));
      } else if (recurrent) {
        a_t[t].addmm_(h, w_t);
      }
      const T* c_prev = t == 0 ? c0.data_ptr<T>() : c + (t - 1) * BH;
      if (zc) {  // zoneout: this step's z, and h_{t-1} to mix in
        e.zc = zc + t * BH, e.zh = zh + t * BH;
        e.hp = t == 0 ? h0.data_ptr<T>() : y + (t - 1) * BH;
      }
      step(a + t * BG, c_prev, c + t * BH, tc + t * BH, y + t * BH, e, B, H);
    }
  });
}

// dY (T, B, H): dL/dh_t from above, with dh_n already added at each sequence's last step;
// dCx (T, B, H) or None: dc_n placed at each sequence's last step (variable lengths);
// dc (B, H) in: dc_n (zeros with dCx), out: dL/dc_0. Writes dG. recurrent: as in lstm_forward.
// Zoneout: keep_c, keep_h (T, B, H) as in the forward; carry (B, H) in: zeros, out: the part of
// dL/dh_0 that came through h_1 = z ⊙ h_0 + … (the caller adds it to dh_0).
void lstm_backward(const at::Tensor& A, const at::Tensor& Cs, const at::Tensor& TC,
                   const at::Tensor& c0, const at::Tensor& w_hh,
                   const c10::optional<at::Tensor>& w_t_packed,
                   const c10::optional<at::Tensor>& peep_in,
                   const c10::optional<at::Tensor>& peep_o, const at::Tensor& dY,
                   const c10::optional<at::Tensor>& dCx, at::Tensor dc, at::Tensor dG,
                   bool recurrent, const c10::optional<at::Tensor>& mask_h,
                   const c10::optional<at::Tensor>& mask_g,
                   const c10::optional<at::Tensor>& keep_c,
                   const c10::optional<at::Tensor>& keep_h,
                   const c10::optional<at::Tensor>& carry) {
  const int64_t steps = A.size(0), B = A.size(1), G = A.size(2), H = c0.size(1);
  const bool coupled = G == 3 * H;
  TORCH_CHECK(coupled || G == 4 * H, "lstm_cpu: A must have 3H or 4H gate columns");
  for (const auto& [t, name] : {std::pair{A, "A"}, {Cs, "Cs"}, {TC, "TC"}, {c0, "c0"},
                                {w_hh, "w_hh"}, {dY, "dY"}, {dc, "dc"}, {dG, "dG"}})
    check(t, name, A);
  TORCH_CHECK(peep_in.has_value() == peep_o.has_value(), "lstm_cpu: peep_in without peep_o");
  if (peep_in) check(*peep_in, "peep_in", A), check(*peep_o, "peep_o", A);
  if (dCx) check(*dCx, "dCx", A);
  if (mask_h) check(*mask_h, "mask_h", A);
  if (mask_g) check(*mask_g, "mask_g", A);
  TORCH_CHECK(keep_c.has_value() == keep_h.has_value() && keep_c.has_value() == carry.has_value(),
              "lstm_cpu: keep_c, keep_h and carry go together");
  if (keep_c) check(*keep_c, "keep_c", A), check(*keep_h, "keep_h", A), check(*carry, "carry", A);
  at::Tensor dh = at::empty_like(dc);
  at::Tensor back = mask_h ? at::empty_like(dc) : at::Tensor();  // dG_{t+1} · W_hh
  AT_DISPATCH_FLOATING_TYPES(A.scalar_type(), "lstm_backward", [&] {
    FlushDenormals ftz;
    using T = scalar_t;
    const Peepholes<T> p(peep_in, peep_o, coupled);
    StepExtras<T> e;
    e.pi = p.i, e.pf = p.f, e.po = p.o;
    e.mg = mask_g ? mask_g->data_ptr<T>() : nullptr;
    const T* zc = keep_c ? keep_c->data_ptr<T>() : nullptr;
    const T* zh = keep_h ? keep_h->data_ptr<T>() : nullptr;
    e.carry = carry ? carry->data_ptr<T>() : nullptr;
    const auto step = by_variant(
        peep_in.has_value(), coupled, mask_g.has_value(), keep_c.has_value(),
        [](auto peep, auto cpl, auto drop, auto zone) {
          return &backward_step<T, decltype(peep)::value, decltype(cpl)::value,
                                decltype(drop)::value, decltype(zone)::value>;
        });
    // Per-step tensors (for the GEMMs) made once; the gate math gets raw pointers.
    const std::vector<at::Tensor> dy_t = dY.unbind(0), dg_t = dG.unbind(0);
    const T *a = A.data_ptr<T>(), *c = Cs.data_ptr<T>(), *tc = TC.data_ptr<T>();
    const T* dcx = dCx ? dCx->data_ptr<T>() : nullptr;
    T *dg = dG.data_ptr<T>(), *dcp = dc.data_ptr<T>();
    const int64_t BG = B * G, BH = B * H;
    for (int64_t t = steps - 1; t >= 0; --t) {
      const at::Tensor* dh_t = &dy_t[t];  // dL/dh_t = dY_t + dG_{t+1} · W_hh
      if (recurrent && t < steps - 1 && mask_h) {  // Gal: dh_t = dY_t + m_h ⊙ (dG_{t+1} · W_hh)
        if (w_t_packed) {
          at::addcmul_out(dh, dy_t[t], packed_linear(dg_t[t + 1], *w_t_packed), *mask_h);
        } else {
          at::mm_out(back, dg_t[t + 1], w_hh);
          at::addcmul_out(dh, dy_t[t], back, *mask_h);
        }
        dh_t = &dh;
      } else if (recurrent && t < steps - 1) {
        if (w_t_packed) {
          at::add_out(dh, dy_t[t], packed_linear(dg_t[t + 1], *w_t_packed));
        } else {
          at::addmm_out(dh, dy_t[t], dg_t[t + 1], w_hh);
        }
        dh_t = &dh;
      }
      if (dcx) {
        for (int64_t k = 0; k < BH; ++k) dcp[k] += dcx[t * BH + k];
      }
      const T* c_prev = t == 0 ? c0.data_ptr<T>() : c + (t - 1) * BH;
      if (zc) e.zc = zc + t * BH, e.zh = zh + t * BH;
      step(a + t * BG, c_prev, tc + t * BH, dh_t->data_ptr<T>(), dcp, dg + t * BG, e, B, H);
    }
  });
}

}  // namespace

TORCH_LIBRARY(unroll_lstm_cpu, m) {
  m.def(
      "forward(Tensor(a!) A, Tensor h0, Tensor c0, Tensor w_hh, Tensor? w_packed, "
      "Tensor? peep_in, Tensor? peep_o, Tensor(b!) Cs, Tensor(c!) TC, Tensor(d!) Y, "
      "bool recurrent=True, Tensor? mask_h=None, Tensor? mask_g=None, Tensor? keep_c=None, "
      "Tensor? keep_h=None) -> ()");
  m.def(
      "backward(Tensor A, Tensor Cs, Tensor TC, Tensor c0, Tensor w_hh, Tensor? w_t_packed, "
      "Tensor? peep_in, Tensor? peep_o, Tensor dY, Tensor? dCx, Tensor(a!) dc, Tensor(b!) dG, "
      "bool recurrent=True, Tensor? mask_h=None, Tensor? mask_g=None, Tensor? keep_c=None, "
      "Tensor? keep_h=None, Tensor(c!)? carry=None) -> ()");
  m.def("activations(Tensor x) -> (Tensor, Tensor)");
  m.def("transpose(Tensor w) -> Tensor");
}

TORCH_LIBRARY_IMPL(unroll_lstm_cpu, CPU, m) {
  m.impl("forward", &lstm_forward);
  m.impl("backward", &lstm_backward);
  m.impl("activations", &activations);
  m.impl("transpose", &transpose);
}

// A prepacked weight is an MkldnnCPU tensor, and the dispatcher picks the kernel by it.
TORCH_LIBRARY_IMPL(unroll_lstm_cpu, MkldnnCPU, m) {
  m.impl("forward", &lstm_forward);
  m.impl("backward", &lstm_backward);
}
