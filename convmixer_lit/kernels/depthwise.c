/* Weight gradient of a depthwise 2-D convolution (stride 1, 'same' zero padding, odd square kernel K), fp32,
 * channels-last tensors:  dW[c, i, j] = sum over n, h, w of  x[n, h+i-K/2, w+j-K/2, c] * dy[n, h, w, c].
 *
 * Why: oneDNN computes this gradient ~8x slower than this loop on the 2-core AVX-512 CPU this project runs on, and
 * it was the largest part of ConvMixer's training step (docs/benchmarks.md). The loop keeps one row of K
 * accumulators (16 channels each, a vector register) in registers while it sweeps an image row, so every load of
 * dy feeds K fused multiply-adds. Plain C with GCC/Clang vector extensions: the compiler picks AVX-512, AVX2 or
 * NEON. Each call handles channels [c0, c1) (multiples of 16); Python runs one call per thread.
 */
#include <stdint.h>
#include <string.h>

typedef float v16 __attribute__((vector_size(64)));
static inline v16 load16(const float *p) { v16 v; memcpy(&v, p, sizeof v); return v; }

#define DEFINE_WGRAD(K)                                                                                         \
  static void wgrad_##K(const float *x, const float *dy, float *dw, int64_t N, int64_t H, int64_t W,           \
                        int64_t C, int64_t c0, int64_t c1) {                                                    \
    const int64_t P = K / 2;                                                                                    \
    for (int64_t c = c0; c < c1; c += 16) {                                                                     \
      v16 sum[K * K];                                                                                           \
      for (int t = 0; t < K * K; t++) sum[t] = (v16){0};                                                        \
      for (int64_t n = 0; n < N; n++)                                                                           \
        for (int64_t h = 0; h < H; h++) {                                                                       \
          const float *dy_row = dy + ((n * H + h) * W) * C + c;                                                 \
          for (int i = 0; i < K; i++) {                                                                         \
            const int64_t hi = h + i - P;                                                                       \
            if (hi < 0 || hi >= H) continue;                                                                    \
            const float *x_row = x + ((n * H + hi) * W) * C + c;                                                \
            v16 acc[K];                                                                                         \
            for (int j = 0; j < K; j++) acc[j] = sum[i * K + j];                                                \
            for (int64_t w = 0; w < W; w++) {                                                                   \
              const v16 g = load16(dy_row + w * C);                                                             \
              for (int j = 0; j < K; j++) {                                                                     \
                const int64_t wi = w + j - P;                                                                   \
                if (wi >= 0 && wi < W) acc[j] += load16(x_row + wi * C) * g;                                    \
              }                                                                                                 \
            }                                                                                                   \
            for (int j = 0; j < K; j++) sum[i * K + j] = acc[j];                                                \
          }                                                                                                     \
        }                                                                                                       \
      for (int t = 0; t < K * K; t++)                                                                           \
        for (int l = 0; l < 16; l++) dw[(c + l) * K * K + t] = sum[t][l];                                       \
    }                                                                                                           \
  }

DEFINE_WGRAD(3)
DEFINE_WGRAD(5)
DEFINE_WGRAD(7)
DEFINE_WGRAD(9)

/* Returns 0 on success, 1 for a kernel size without a compiled loop. */
int depthwise_weight_grad(const float *x, const float *dy, float *dw, int64_t N, int64_t H, int64_t W, int64_t C,
                          int64_t K, int64_t c0, int64_t c1) {
  switch (K) {
    case 3: wgrad_3(x, dy, dw, N, H, W, C, c0, c1); return 0;
    case 5: wgrad_5(x, dy, dw, N, H, W, C, c0, c1); return 0;
    case 7: wgrad_7(x, dy, dw, N, H, W, C, c0, c1); return 0;
    case 9: wgrad_9(x, dy, dw, N, H, W, C, c0, c1); return 0;
    default: return 1;
  }
}
