// word2vec's SGD update on the CPU (skip-gram/CBOW, negative sampling/NCE), compiled on first
// use by unroll/nn/kernels/word2vec_cpu.py. The math is unroll/models/word2vec.py's (see its
// docstring); reference_update there applies a batch of examples at the same vectors, this
// applies them one after another, as the C tool does: a batch of one example is the same update.
//
// Per example n (inputs in[a..e), target t, noise words neg[n, 0..K)):
//   h      = v[in[a]]  or the mean/sum of v[in[a..e)]            (D)
//   rows   = t, neg[n, 0], ..., neg[n, K-1]; a noise word equal to t is skipped
//   s_j    = u[rows_j] · h  (+ b[rows_j] − log_kq[rows_j] for NCE)
//   g_j    = σ(s_j) − y_j                                          (y = 1, 0, ..., 0)
//   grad_h = Σ_j g_j u[rows_j]          — every read before the first write
//   u[rows_j] −= lr g_j h;  b[rows_j] −= lr g_j;  v[in[c]] −= lr grad_h for each input c
//
// Threads take blocks of consecutive examples from a shared counter until none is left, and
// update the shared rows without locks, as the C tool and gensim do ("Hogwild"). A thread that
// the OS holds back leaves its blocks to the others (no thread waits for a fixed share). With
// one thread the blocks go in order: the examples are applied in order, deterministically. Layout: v, u (V, D) contiguous; b, log_kq (V,); index tensors int64.
//
// `examples` draws a chunk's examples (subsampling, dynamic windows, noise words) exactly as
// unroll/data/word_windows.py's chunk_examples does, from the same counter-based draws.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "fast_math.h"

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <vector>

namespace {

template <typename T>
inline T dot(const T* __restrict__ x, const T* __restrict__ y, int64_t D) {
  T acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t d = 0; d < D; ++d) acc += x[d] * y[d];
  return acc;
}

template <typename T>
inline void axpy(T a, const T* __restrict__ x, T* __restrict__ y, int64_t D) {
#pragma omp simd
  for (int64_t d = 0; d < D; ++d) y[d] += a * x[d];
}

// exp and log for float as polynomials that inline (Cephes expf/logf, relative error below
// 2e-7; exp_poly is fast_math.h's): libm's calls were a fifth of the update's time.
// float64 keeps libm (the tests compare it with the reference at 1e-12).
using unroll_fast::exp_poly;

inline float log_(float x) {  // x > 0, normal
  int32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  int32_t e = ((bits >> 23) & 0xff) - 126;  // x = m · 2^e, m in [0.5, 1)
  bits = (bits & 0x807fffff) | 0x3f000000;
  float m;
  std::memcpy(&m, &bits, sizeof m);
  if (m < 0.707106781186547524f) {
    e -= 1;
    m = m + m - 1.0f;
  } else {
    m = m - 1.0f;
  }
  const float z = m * m;
  float y = 7.0376836292e-2f;
  y = y * m - 1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m - 1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m - 1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m - 2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  y = y * m * z + float(e) * -2.12194440e-4f - 0.5f * z;
  return m + y + float(e) * 0.693359375f;
}

inline double log1p_(double x) { return std::log1p(x); }
inline float log1p_(float x) { return log_(1.0f + x); }  // x in (0, 1]: no cancellation to fear

// g_j = σ(s_j) − y_j and the loss terms (−log σ(s_o), −log σ(−s_n)) of an example's K + 1
// scores at once, branch-free so the loop vectorizes: softplus(x) = max(x, 0) +
// log1p(exp(−|x|)) cannot overflow. y = 1 for j = 0; `live` is 0 for a skipped noise word.
template <typename T>
inline double gradients_and_loss(const T* __restrict__ s, const T* __restrict__ live,
                                 T* __restrict__ g, int64_t n) {
  T loss = 0;
#pragma omp simd reduction(+ : loss)
  for (int64_t j = 0; j < n; ++j) {
    const T y = j == 0 ? T(1) : T(0);
    const T e = exp_poly(-std::abs(s[j]));
    const T sigma = s[j] >= 0 ? T(1) / (T(1) + e) : e / (T(1) + e);
    const T x = j == 0 ? -s[j] : s[j];
    loss += live[j] * (std::max(x, T(0)) + log1p_(e));
    g[j] = live[j] * (sigma - y);
  }
  return double(loss);
}

// A thread's scratch: h (when it is a mean/sum), dL/dh, g_j, the rows of an example.
template <typename T>
struct Work {
  std::vector<T> h_buf, grad_h, s, live, g;
  std::vector<int64_t> rows;
  Work(int64_t D, int64_t K)
      : h_buf(D), grad_h(D), s(K + 1), live(K + 1), g(K + 1), rows(K + 1) {}
};

template <typename T>
double update_range(int64_t begin, int64_t end, T* v, T* u, T* b, const T* log_kq,
                    const int64_t* in, const int64_t* off, const int64_t* targets,
                    const int64_t* neg, int64_t D, int64_t K, T lr, bool mean, Work<T>& w) {
  std::vector<T>&h_buf = w.h_buf, &grad_h = w.grad_h, &g = w.g, &sc = w.s, &live = w.live;
  std::vector<int64_t>& rows = w.rows;
  double loss = 0;
  for (int64_t n = begin; n < end; ++n) {
    const int64_t a = off ? off[n] : n, e = off ? off[n + 1] : n + 1;
    if (e == a) continue;
    const T* h;
    if (e - a == 1) {
      h = v + in[a] * D;  // no copy: v[in] is written only at the end of the example
    } else {
      std::fill(h_buf.begin(), h_buf.end(), T(0));
      for (int64_t c = a; c < e; ++c) axpy(T(1), v + in[c] * D, h_buf.data(), D);
      if (mean) {
        const T inv = T(1) / T(e - a);
        for (int64_t d = 0; d < D; ++d) h_buf[d] *= inv;
      }
      h = h_buf.data();
    }
    const int64_t t = targets[n];
    rows[0] = t;
    for (int64_t k = 0; k < K; ++k) rows[k + 1] = neg[n * K + k];
    for (int64_t j = 0; j <= K; ++j) {
      live[j] = j > 0 && rows[j] == t ? T(0) : T(1);  // skipped: no loss, no update
      sc[j] = dot(u + rows[j] * D, h, D);
      if (b) sc[j] += b[rows[j]] - log_kq[rows[j]];
    }
    loss += gradients_and_loss(sc.data(), live.data(), g.data(), K + 1);
    std::fill(grad_h.begin(), grad_h.end(), T(0));
    for (int64_t j = 0; j <= K; ++j)
      if (g[j] != 0) axpy(g[j], u + rows[j] * D, grad_h.data(), D);
    for (int64_t j = 0; j <= K; ++j) {
      if (g[j] == 0) continue;
      axpy(-lr * g[j], h, u + rows[j] * D, D);
      if (b) b[rows[j]] -= lr * g[j];
    }
    for (int64_t c = a; c < e; ++c) axpy(-lr, grad_h.data(), v + in[c] * D, D);
  }
  return loss;
}

void check_index(const at::Tensor& x, const char* name) {
  TORCH_CHECK(x.scalar_type() == at::kLong && x.is_contiguous(), name,
              " must be a contiguous int64 tensor");
}

double update(at::Tensor v, at::Tensor u, const c10::optional<at::Tensor>& b,
              const c10::optional<at::Tensor>& log_kq, const at::Tensor& inputs,
              const c10::optional<at::Tensor>& offsets, const at::Tensor& targets,
              const at::Tensor& negatives, double lr, bool mean) {
  TORCH_CHECK(v.dim() == 2 && v.is_contiguous() && u.is_contiguous() && v.sizes() == u.sizes() &&
                  v.scalar_type() == u.scalar_type(),
              "v and u must be contiguous (V, D) tensors of one dtype");
  TORCH_CHECK(b.has_value() == log_kq.has_value(), "NCE needs both b and log_kq");
  check_index(inputs, "inputs");
  check_index(targets, "targets");
  check_index(negatives, "negatives");
  if (offsets) check_index(*offsets, "offsets");
  const int64_t N = targets.numel(), D = v.size(1);
  const int64_t K = N ? negatives.numel() / N : 0;
  TORCH_CHECK(negatives.dim() == 2 && negatives.size(0) == N, "negatives must be (N, K)");
  TORCH_CHECK(offsets ? offsets->numel() == N + 1 : inputs.numel() == N,
              "inputs/offsets do not match the number of examples");
  double total = 0;
  AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "word2vec_update", [&] {
    scalar_t* bp = nullptr;
    const scalar_t* lp = nullptr;
    if (b) {
      TORCH_CHECK(b->is_contiguous() && log_kq->is_contiguous() &&
                      b->scalar_type() == v.scalar_type() &&
                      log_kq->scalar_type() == v.scalar_type(),
                  "b and log_kq must be contiguous and of v's dtype");
      bp = b->data_ptr<scalar_t>();
      lp = log_kq->data_ptr<scalar_t>();
    }
    scalar_t* vp = v.data_ptr<scalar_t>();
    scalar_t* up = u.data_ptr<scalar_t>();
    const int64_t* in = inputs.data_ptr<int64_t>();
    const int64_t* off = offsets ? offsets->data_ptr<int64_t>() : nullptr;
    const int64_t* tg = targets.data_ptr<int64_t>();
    const int64_t* ng = negatives.data_ptr<int64_t>();
    // One task per thread; each pulls blocks of examples from `next` (see the top).
    const int64_t block = 64;
    const int64_t tasks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(),
                                                                 (N + block - 1) / block));
    std::atomic<int64_t> next{0};
    std::vector<double> losses(tasks, 0.0);
    at::parallel_for(0, tasks, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        Work<scalar_t> work(D, K);
        for (int64_t a = next.fetch_add(block); a < N; a = next.fetch_add(block))
          losses[t] += update_range<scalar_t>(a, std::min(N, a + block), vp, up, bp, lp, in, off,
                                              tg, ng, D, K, scalar_t(lr), mean, work);
      }
    });
    for (double l : losses) total += l;
  });
  return total;
}

// ---- the examples of a chunk (unroll/data/word_windows.py's chunk_examples, bit for bit) ----
// Counter-based draws: draw i of a stream with key k is splitmix64(k + i) >> 11 (53 bits).

inline uint64_t splitmix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
inline uint64_t bits(uint64_t key, uint64_t i) { return splitmix64(key + i) >> 11; }
inline double uniform(uint64_t key, uint64_t i) { return double(bits(key, i)) * 0x1p-53; }

std::vector<at::Tensor> examples(const at::Tensor& ids, const at::Tensor& sentence, int64_t start,
                                 const at::Tensor& keep, const at::Tensor& accept,
                                 const at::Tensor& alias, int64_t window, int64_t K, bool cbow,
                                 bool shrink, int64_t key_subsample, int64_t key_window,
                                 int64_t key_index, int64_t key_coin) {
  check_index(ids, "ids");
  check_index(sentence, "sentence");
  check_index(alias, "alias");
  TORCH_CHECK(keep.scalar_type() == at::kDouble && accept.scalar_type() == at::kDouble &&
                  keep.is_contiguous() && accept.is_contiguous(),
              "keep and accept must be contiguous float64");
  const int64_t n = ids.numel(), V = accept.numel();
  const int64_t* id = ids.data_ptr<int64_t>();
  const int64_t* sent = sentence.data_ptr<int64_t>();
  const double* kp = keep.data_ptr<double>();
  // Subsampling, then each kept word's reach (its draw indexed by its corpus position).
  std::vector<int64_t> w, s, reach;
  w.reserve(n), s.reserve(n), reach.reserve(n);
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t p = uint64_t(start + i);
    if (!(uniform(uint64_t(key_subsample), p) < kp[id[i]])) continue;
    w.push_back(id[i]);
    s.push_back(sent[i]);
    reach.push_back(shrink ? window - int64_t(bits(uint64_t(key_window), p) % uint64_t(window))
                           : window);
  }
  // Windows: by position, then neighbour from left to right.
  const int64_t m = int64_t(w.size());
  std::vector<int64_t> inputs, offsets, targets;
  if (cbow) offsets.push_back(0);
  for (int64_t k = 0; k < m; ++k) {
    const int64_t lo = std::max<int64_t>(0, k - reach[k]);
    const int64_t hi = std::min<int64_t>(m - 1, k + reach[k]);
    int64_t count = 0;
    for (int64_t j = lo; j <= hi; ++j) {
      if (j == k || s[j] != s[k]) continue;
      inputs.push_back(w[j]);
      ++count;
      if (!cbow) targets.push_back(w[k]);
    }
    if (cbow && count) {
      offsets.push_back(int64_t(inputs.size()));
      targets.push_back(w[k]);
    }
  }
  // Noise words by the alias method.
  const int64_t N = int64_t(targets.size());
  at::Tensor negatives = at::empty({N, K}, ids.options());
  int64_t* ng = negatives.data_ptr<int64_t>();
  const double* ac = accept.data_ptr<double>();
  const int64_t* al = alias.data_ptr<int64_t>();
  for (int64_t i = 0; i < N * K; ++i) {
    const int64_t col = int64_t(bits(uint64_t(key_index), uint64_t(i)) % uint64_t(V));
    ng[i] = uniform(uint64_t(key_coin), uint64_t(i)) < ac[col] ? col : al[col];
  }
  auto tensor = [&](const std::vector<int64_t>& v) {
    return at::tensor(c10::ArrayRef<int64_t>(v), ids.options());
  };
  at::Tensor off = cbow ? tensor(offsets) : at::empty({0}, ids.options());
  return {tensor(inputs), off, tensor(targets), negatives};
}

}  // namespace

TORCH_LIBRARY(unroll_word2vec_cpu, m) {
  m.def(
      "update(Tensor(a!) v, Tensor(b!) u, Tensor(c!)? b, Tensor? log_kq, Tensor inputs, "
      "Tensor? offsets, Tensor targets, Tensor negatives, float lr, bool mean) -> float");
  m.def(
      "examples(Tensor ids, Tensor sentence, int start, Tensor keep, Tensor accept, "
      "Tensor alias, int window, int negative, bool cbow, bool shrink, int key_subsample, "
      "int key_window, int key_index, int key_coin) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(unroll_word2vec_cpu, CPU, m) {
  m.impl("update", &update);
  m.impl("examples", &examples);
}
