/* GELU followed by batch norm, y = BN(GELU(z)), over fp32 channels-last rows: z is (R, C), R = N*H*W, C channels
 * contiguous.
 *
 * Why: in fp32 (CPUs without native bf16), ConvMixer's GELU and batch-norm passes forward and backward took about a
 * third of the training step (docs/benchmarks.md), each a pass over a tensor larger than most caches. PyTorch runs
 * GELU (read z, write a), BN's statistics (read a), BN's output (read a, write y), and backward BN's sums (read dy
 * and a), BN's input gradient (read dy and a, write da) and GELU's (read da and z, write dz): 13 tensor passes.
 * Here: GELU with the statistics (read z, write a), the output (read a, write y), the sums (read dy and a) and the
 * input gradient through both (read dy, a and z, write dz): 10, with the same GELU evaluations as PyTorch (one
 * forward, one derivative backward; recomputing GELU instead of storing a made the loops compute-bound, slower than
 * PyTorch on AVX2). Each call handles rows [r0, r1) (Python runs one call per thread and adds up the per-thread
 * sums in fp64).
 *
 * GELU is the exact (erf) one: gelu(z) = z * Phi(z), gelu'(z) = Phi(z) + z * phi(z). Phi uses Abramowitz & Stegun
 * 7.1.26 (|error of erf| < 1.5e-7) with one exp shared with phi.
 */
#include "vectors.h"

static inline vf splat(float x) { return (vf){0} + x; }
static inline vf blend(vi mask, vf a, vf b) { return (vf)(((vi)a & mask) | ((vi)b & ~mask)); }

/* exp(x) for x <= 0 (here x = -z^2/2): 2^n * p(r), r = x - n ln2 in [-ln2/2, ln2/2], p a degree-6 Taylor polynomial
 * (relative error < 2e-7); x is clamped at -87 (exp(-87) ~ 1.6e-38, the smallest normal float), which only changes
 * results that are 0 in fp32 anyway (Phi and phi of |z| > 13). */
static inline vf exp_neg(vf x) {
  x = blend((vi)(x < -87.0f), splat(-87.0f), x);
  const vf n = __builtin_convertvector(__builtin_convertvector(x * 1.44269504f - 0.5f, vi), vf);  /* round */
  const vf r = x - n * 0.693145752f - n * 1.42860677e-6f;
  vf p = splat(1.0f / 720);
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const vi bits = (__builtin_convertvector(n, vi) + 127) << 23;
  return p * (vf)bits;
}

/* Phi(z) (standard normal CDF) and phi(z) (its density) at once. */
static inline void normal_cdf_pdf(vf z, vf *cdf, vf *pdf) {
  const vf e = exp_neg(-0.5f * z * z);
  const vf x = blend((vi)(z < 0), -z, z) * 0.707106781f;  /* |z| / sqrt 2 */
  const vf t = 1.0f / (1.0f + 0.3275911f * x);
  const vf q = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))))
               * e;  /* erfc(x) */
  *cdf = blend((vi)(z < 0), 0.5f * q, 1.0f - 0.5f * q);
  *pdf = e * 0.398942280f;
}

static inline vf gelu(vf z) { vf cdf, pdf; normal_cdf_pdf(z, &cdf, &pdf); return z * cdf; }

/* The lanes per vector this build uses (8 or 16). */
int gelu_bn_vector_lanes(void) { return VL; }

/* Per-channel sums over rows [r0, r1) of u and u * w, in memory order (a sweep per channel block would stride
 * through the whole tensor); blocks of 64 rows are summed in fp32 vectors kept in L1, the blocks in fp64.
 * stats: u = w = gelu(x) - ref, with gelu(x) stored to a (the forward statistics, shifted by a value near the mean so
 * the variance keeps its precision); else: u = y (dy), w = x - ref (a - mean: the backward reductions). */
static inline void channel_sums(int stats, const float *x, const float *y, const float *ref, float *a, double *s1,
                                double *s2, int64_t C, int64_t r0, int64_t r1) {
  const int64_t V = C / VL;
  vf acc[2 * V];  /* on the stack: vector-aligned (2 KB + 4 KB for 256 channels) */
  vd total[2 * V];
  memset(acc, 0, sizeof acc);
  memset(total, 0, sizeof total);
  for (int64_t b = r0; b < r1; b += 64) {
    const int64_t end = b + 64 < r1 ? b + 64 : r1;
    for (int64_t r = b; r < end; r++)
      for (int64_t v = 0; v < V; v++) {
        const int64_t i = r * C + v * VL;
        vf u, w;
        if (stats) {
          const vf g = gelu(load_f32(x + i));
          store_f32(a + i, g);
          u = w = g - load_f32(ref + v * VL);
        } else {
          u = load_f32(y + i);
          w = load_f32(x + i) - load_f32(ref + v * VL);
        }
        acc[v] += u;
        acc[V + v] += u * w;
      }
    for (int64_t v = 0; v < 2 * V; v++) {
      total[v] += __builtin_convertvector(acc[v], vd);
      acc[v] = (vf){0};
    }
  }
  memcpy(s1, total, V * sizeof(vd));
  memcpy(s2, total + V, V * sizeof(vd));
}

/* a = gelu(z), and per-channel sums of a - shift and (a - shift)^2. */
void gelu_bn_stats(const float *z, const float *shift, float *a, double *sum, double *sumsq, int64_t C, int64_t r0,
                   int64_t r1) {
  channel_sums(1, z, NULL, shift, a, sum, sumsq, C, r0, r1);
}

/* y = (x - mean) * scale + beta per channel, x = a (training: gelu(z) stored by gelu_bn_stats) or, with
 * `apply_gelu`, gelu(x) (inference: one pass from z); scale = weight / std. The mean is subtracted first, as PyTorch
 * does, so activations far from zero keep their precision. */
void gelu_bn_forward(const float *x, const float *mean, const float *scale, const float *beta, float *y,
                     int64_t apply_gelu, int64_t C, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; r++)
    for (int64_t c = 0; c < C; c += VL) {
      const vf v = load_f32(x + r * C + c);
      const vf g = apply_gelu ? gelu(v) : v;
      store_f32(y + r * C + c, (g - load_f32(mean + c)) * load_f32(scale + c) + load_f32(beta + c));
    }
}

/* Per-channel sums of dy and dy * (a - mean): the backward pass's reductions. */
void gelu_bn_backward_sums(const float *a, const float *dy, const float *mean, double *sum_dy, double *sum_dy_a,
                           int64_t C, int64_t r0, int64_t r1) {
  channel_sums(0, a, dy, mean, NULL, sum_dy, sum_dy_a, C, r0, r1);
}

/* dz = (A * dy + B * (a - mean) + D) * gelu'(z), per channel: BN's input gradient (A, B, D from the sums) through
 * GELU. */
void gelu_bn_backward(const float *z, const float *a, const float *dy, const float *mean, const float *A,
                      const float *B, const float *D, float *dz, int64_t C, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; r++)
    for (int64_t c = 0; c < C; c += VL) {
      const vf x = load_f32(z + r * C + c);
      vf cdf, pdf;
      normal_cdf_pdf(x, &cdf, &pdf);
      const vf centred = load_f32(a + r * C + c) - load_f32(mean + c);
      const vf da = load_f32(A + c) * load_f32(dy + r * C + c) + load_f32(B + c) * centred + load_f32(D + c);
      store_f32(dz + r * C + c, da * (cdf + x * pdf));
    }
}
