/* Weight gradient of a depthwise 2-D convolution (stride 1, 'same' zero padding, odd square kernel K) from fp32 or
 * bf16 channels-last tensors, accumulated and returned in fp32:  dW[c, i, j] = sum over n, h, w of  x[n, h+i-K/2, w+j-K/2, c] * dy[n, h, w, c].
 *
 * Why: oneDNN computes this gradient ~8x slower than this loop on the 2-core AVX-512 CPU this project runs on, and
 * it was the largest part of ConvMixer's training step (docs/benchmarks.md). The loop keeps one row of K
 * accumulators (VL channels each, a vector register) and a sliding window of the K input columns they need in
 * registers while it sweeps an image row, so each step loads (and, for bf16, widens) one dy and one x vector and
 * feeds them to K fused multiply-adds, with no branch for the zero padding. Plain C with GCC/Clang vector
 * extensions: the compiler picks AVX-512, AVX2 or NEON. Each call handles channels [c0, c1) (multiples of 16);
 * Python runs one call per thread.
 * Vector width (vectors.h): 16 lanes with AVX-512, else 8, so a 7x7 kernel's 7 accumulators + 7 window columns + dy
 * fit AVX2's 16 registers instead of spilling.
 */
#include "vectors.h"

typedef uint16_t vbf16 __attribute__((vector_size(2 * VL)));

static inline vf load_bf16(const uint16_t *p) {  /* bf16 is the top half of an fp32: widen, shift, reinterpret */
  vbf16 h; memcpy(&h, p, sizeof h);
  return (vf)(__builtin_convertvector(h, vu32) << 16);
}

/* The lanes per vector this build uses (8 or 16): Python's tests read it. */
int depthwise_vector_lanes(void) { return VL; }

#define DEFINE_WGRAD(K, T, loadv)                                                                               \
  static void wgrad_##K##_##T(const T *x, const T *dy, float *dw, int64_t N, int64_t H, int64_t W,              \
                              int64_t C, int64_t c0, int64_t c1) {                                              \
    const int64_t P = K / 2;                                                                                    \
    const vf zero = {0};                                                                                        \
    for (int64_t c = c0; c < c1; c += VL) {                                                                     \
      vf sum[K * K];                                                                                            \
      for (int t = 0; t < K * K; t++) sum[t] = zero;                                                            \
      for (int64_t n = 0; n < N; n++)                                                                           \
        for (int64_t h = 0; h < H; h++) {                                                                       \
          const T *dy_row = dy + ((n * H + h) * W) * C + c;                                                     \
          for (int i = 0; i < K; i++) {                                                                         \
            const int64_t hi = h + i - P;                                                                       \
            if (hi < 0 || hi >= H) continue;                                                                    \
            const T *x_row = x + ((n * H + hi) * W) * C + c;                                                    \
            vf acc[K], win[K];  /* win[j] = x at column w + j - P (zero outside the row): a sliding window */   \
            for (int j = 0; j < K; j++) {                                                                       \
              acc[j] = sum[i * K + j];                                                                          \
              win[j] = (j - P >= 0 && j - P < W) ? loadv(x_row + (j - P) * C) : zero;                           \
            }                                                                                                   \
            for (int64_t w = 0; w < W; w++) {                                                                   \
              const vf g = loadv(dy_row + w * C);                                                               \
              for (int j = 0; j < K; j++) acc[j] += win[j] * g;                                                 \
              for (int j = 0; j < K - 1; j++) win[j] = win[j + 1]; /* register moves once unrolled */           \
              win[K - 1] = w + P + 1 < W ? loadv(x_row + (w + P + 1) * C) : zero;                               \
            }                                                                                                   \
            for (int j = 0; j < K; j++) sum[i * K + j] = acc[j];                                                \
          }                                                                                                     \
        }                                                                                                       \
      for (int t = 0; t < K * K; t++)                                                                           \
        for (int l = 0; l < VL; l++) dw[(c + l) * K * K + t] = sum[t][l];                                       \
    }                                                                                                           \
  }

typedef uint16_t bf16;
DEFINE_WGRAD(3, float, load_f32)
DEFINE_WGRAD(5, float, load_f32)
DEFINE_WGRAD(7, float, load_f32)
DEFINE_WGRAD(9, float, load_f32)
DEFINE_WGRAD(3, bf16, load_bf16)
DEFINE_WGRAD(5, bf16, load_bf16)
DEFINE_WGRAD(7, bf16, load_bf16)
DEFINE_WGRAD(9, bf16, load_bf16)

/* x, dy: (N, H, W, C) fp32 (is_bf16 = 0) or bf16 (is_bf16 = 1); dw: (C, K, K) fp32.
 * Returns 0 on success, 1 for a kernel size without a compiled loop. */
int depthwise_weight_grad(const void *x, const void *dy, float *dw, int64_t N, int64_t H, int64_t W, int64_t C,
                          int64_t K, int64_t c0, int64_t c1, int64_t is_bf16) {
#define CASE(k)                                                                                                 \
  case k:                                                                                                       \
    if (is_bf16) wgrad_##k##_bf16(x, dy, dw, N, H, W, C, c0, c1);                                               \
    else wgrad_##k##_float(x, dy, dw, N, H, W, C, c0, c1);                                                      \
    return 0;
  switch (K) {
    CASE(3) CASE(5) CASE(7) CASE(9)
    default: return 1;
  }
}
