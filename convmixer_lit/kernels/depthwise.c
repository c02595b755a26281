/* Weight gradient of a depthwise 2-D convolution (stride 1, 'same' zero padding, odd square kernel K) from fp32 or
 * bf16 channels-last tensors, accumulated and returned in fp32:  dW[c, i, j] = sum over n, h, w of  x[n, h+i-K/2, w+j-K/2, c] * dy[n, h, w, c].
 *
 * Why: oneDNN computes this gradient ~8x slower than this loop on the 2-core AVX-512 CPU this project runs on, and
 * it was the largest part of ConvMixer's training step (docs/benchmarks.md). The loop keeps one row of K
 * accumulators (16 channels each, a vector register) and a sliding window of the K input columns they need in
 * registers while it sweeps an image row, so each step loads (and, for bf16, widens) one dy and one x vector and
 * feeds them to K fused multiply-adds, with no branch for the zero padding. Plain C with GCC/Clang vector
 * extensions: the compiler picks AVX-512, AVX2 or NEON. Each call handles channels [c0, c1) (multiples of 16);
 * Python runs one call per thread.
 */
#include <stdint.h>
#include <string.h>

typedef float v16 __attribute__((vector_size(64)));
typedef uint32_t u32x16 __attribute__((vector_size(64)));
typedef uint16_t bf16x16 __attribute__((vector_size(32)));

static inline v16 load_f32(const float *p) { v16 v; memcpy(&v, p, sizeof v); return v; }
static inline v16 load_bf16(const uint16_t *p) {  /* bf16 is the top half of an fp32: widen, shift, reinterpret */
  bf16x16 h; memcpy(&h, p, sizeof h);
  return (v16)(__builtin_convertvector(h, u32x16) << 16);
}

#define DEFINE_WGRAD(K, T, load16)                                                                              \
  static void wgrad_##K##_##T(const T *x, const T *dy, float *dw, int64_t N, int64_t H, int64_t W,             \
                              int64_t C, int64_t c0, int64_t c1) {                                              \
    const int64_t P = K / 2;                                                                                    \
    const v16 zero = {0};                                                                                       \
    for (int64_t c = c0; c < c1; c += 16) {                                                                     \
      v16 sum[K * K];                                                                                           \
      for (int t = 0; t < K * K; t++) sum[t] = zero;                                                            \
      for (int64_t n = 0; n < N; n++)                                                                           \
        for (int64_t h = 0; h < H; h++) {                                                                       \
          const T *dy_row = dy + ((n * H + h) * W) * C + c;                                                     \
          for (int i = 0; i < K; i++) {                                                                         \
            const int64_t hi = h + i - P;                                                                       \
            if (hi < 0 || hi >= H) continue;                                                                    \
            const T *x_row = x + ((n * H + hi) * W) * C + c;                                                    \
            v16 acc[K], win[K]; /* win[j] = x at column w + j - P (zero outside the row): a sliding window */   \
            for (int j = 0; j < K; j++) {                                                                       \
              acc[j] = sum[i * K + j];                                                                          \
              win[j] = (j - P >= 0 && j - P < W) ? load16(x_row + (j - P) * C) : zero;                          \
            }                                                                                                   \
            for (int64_t w = 0; w < W; w++) {                                                                   \
              const v16 g = load16(dy_row + w * C);                                                             \
              for (int j = 0; j < K; j++) acc[j] += win[j] * g;                                                 \
              for (int j = 0; j < K - 1; j++) win[j] = win[j + 1]; /* register moves once unrolled */           \
              win[K - 1] = w + P + 1 < W ? load16(x_row + (w + P + 1) * C) : zero;                              \
            }                                                                                                   \
            for (int j = 0; j < K; j++) sum[i * K + j] = acc[j];                                                \
          }                                                                                                     \
        }                                                                                                       \
      for (int t = 0; t < K * K; t++)                                                                           \
        for (int l = 0; l < 16; l++) dw[(c + l) * K * K + t] = sum[t][l];                                       \
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
