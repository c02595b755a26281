/* The vector types the kit's C loops share: VL fp32 lanes per vector, 16 (one 512-bit register) where the build
 * targets AVX-512, else 8 (one AVX2 register, two NEON ones), so each loop's working set of vectors fits the
 * register file it is built for. GCC/Clang vector extensions: the compiler picks the instructions. */
#ifndef CONVMIXER_LIT_VECTORS_H
#define CONVMIXER_LIT_VECTORS_H
#include <stdint.h>
#include <string.h>

#ifdef __AVX512F__
#define VL 16
#else
#define VL 8
#endif
typedef float vf __attribute__((vector_size(4 * VL)));
typedef int32_t vi __attribute__((vector_size(4 * VL)));
typedef uint32_t vu32 __attribute__((vector_size(4 * VL)));
typedef double vd __attribute__((vector_size(8 * VL)));

/* Unaligned loads and stores (memcpy compiles to one vector move). */
static inline vf load_f32(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline void store_f32(float *p, vf v) { memcpy(p, &v, sizeof v); }
#endif
