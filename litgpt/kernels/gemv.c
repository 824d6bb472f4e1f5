/* Matrix-vector kernels for decoding on x86-64 CPUs with AVX2 + FMA.

   y[m, n] = sum_k x[m, k] * W[n, k] for a few rows of x (m < M <= 8) and a weight W stored as
     - bf16:  uint16 bfloat16 bits, (N, K)
     - f32:   float, (N, K)
     - i8:    int8 codes, (N, K), one float scale per output row: W[n, k] = q[n, k] * scale[n]
     - i4:    4-bit codes in groups of 32 input features, (N, K / 2) bytes; in group g, byte j holds feature
              32 g + j in its low nibble and feature 32 g + 16 + j in its high nibble;
              W[n, k] = (q - 8) * scale[n, g] + zero[n, g]
   x and y are float32. Decoding reads every weight once per token, so these kernels are bound by memory
   bandwidth: each weight row is loaded once and multiplied with all M rows of x, the dequantization is fused
   into the multiply, and rows are split across OpenMP threads (the process's libgomp, shared with PyTorch).
   Tails of K that are not a multiple of 8 are handled by scalar code (i4 requires K % 32 == 0). */

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define MAX_M 8

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __m256 load8_bf16(const uint16_t *p) {
    __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}

static inline __m256 load8_i8(const int8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}

static inline float bf16_to_float(uint16_t b) {
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* One weight row against M rows of x; LOAD8 loads 8 weights as floats, ONE converts a single weight. Two
   accumulators per x row hide the FMA latency when M is 1. */
#define ROW_DOT(LOAD8, ONE)                                                                        \
    do {                                                                                           \
        __m256 acc0[MAX_M], acc1[MAX_M];                                                           \
        for (int m = 0; m < M; m++) acc0[m] = acc1[m] = _mm256_setzero_ps();                       \
        int64_t k = 0;                                                                             \
        for (; k + 16 <= K; k += 16) {                                                             \
            __m256 w0 = LOAD8(row + k), w1 = LOAD8(row + k + 8);                                   \
            for (int m = 0; m < M; m++) {                                                          \
                acc0[m] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + m * K + k), acc0[m]);            \
                acc1[m] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + m * K + k + 8), acc1[m]);        \
            }                                                                                      \
        }                                                                                          \
        for (; k + 8 <= K; k += 8) {                                                               \
            __m256 w0 = LOAD8(row + k);                                                            \
            for (int m = 0; m < M; m++)                                                            \
                acc0[m] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + m * K + k), acc0[m]);            \
        }                                                                                          \
        for (int m = 0; m < M; m++) {                                                              \
            float s = hsum(_mm256_add_ps(acc0[m], acc1[m]));                                       \
            for (int64_t t = k; t < K; t++) s += ONE(row[t]) * x[m * K + t];                       \
            out[m] = s;                                                                            \
        }                                                                                          \
    } while (0)

#define IDENTITY(v) (v)
#define AS_FLOAT(v) ((float)(v))

void gemv_bf16(const float *x, const uint16_t *w, float *y, int64_t M, int64_t N, int64_t K, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const uint16_t *row = w + n * K;
        float out[MAX_M];
        ROW_DOT(load8_bf16, bf16_to_float);
        for (int m = 0; m < M; m++) y[m * N + n] = out[m];
    }
}

void gemv_f32(const float *x, const float *w, float *y, int64_t M, int64_t N, int64_t K, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float *row = w + n * K;
        float out[MAX_M];
        ROW_DOT(_mm256_loadu_ps, IDENTITY);
        for (int m = 0; m < M; m++) y[m * N + n] = out[m];
    }
}

void gemv_i8(const float *x, const int8_t *w, const float *scales, float *y, int64_t M, int64_t N, int64_t K,
             int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const int8_t *row = w + n * K;
        float out[MAX_M];
        ROW_DOT(load8_i8, AS_FLOAT);
        for (int m = 0; m < M; m++) y[m * N + n] = out[m] * scales[n];
    }
}

void gemv_i4(const float *x, const uint8_t *w, const float *scales, const float *zeros, float *y, int64_t M,
             int64_t N, int64_t K, int threads) {
    const int64_t G = K / 32;
    float sums[MAX_M * 512]; /* sums[m * G + g]: x[m] summed over group g (the Python side keeps K <= 16384) */
    if (G > 512) return;
    for (int m = 0; m < M; m++)
        for (int64_t g = 0; g < G; g++) {
            float s = 0.0f;
            for (int t = 0; t < 32; t++) s += x[m * K + g * 32 + t];
            sums[m * G + g] = s;
        }
    const __m128i low = _mm_set1_epi8(0x0F);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const uint8_t *row = w + n * (K / 2);
        const float *sc = scales + n * G, *ze = zeros + n * G;
        __m256 acc[MAX_M];
        float bias[MAX_M];
        for (int m = 0; m < M; m++) {
            acc[m] = _mm256_setzero_ps();
            bias[m] = 0.0f;
        }
        for (int64_t g = 0; g < G; g++) {
            __m128i bytes = _mm_loadu_si128((const __m128i *)(row + g * 16));
            __m128i lo = _mm_and_si128(bytes, low);
            __m128i hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), low);
            __m256 q0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo));
            __m256 q1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)));
            __m256 q2 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi));
            __m256 q3 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8)));
            __m256 scale = _mm256_set1_ps(sc[g]);
            float offset = ze[g] - 8.0f * sc[g];
            for (int m = 0; m < M; m++) {
                const float *xg = x + m * K + g * 32;
                __m256 d = _mm256_mul_ps(q0, _mm256_loadu_ps(xg));
                d = _mm256_fmadd_ps(q1, _mm256_loadu_ps(xg + 8), d);
                d = _mm256_fmadd_ps(q2, _mm256_loadu_ps(xg + 16), d);
                d = _mm256_fmadd_ps(q3, _mm256_loadu_ps(xg + 24), d);
                acc[m] = _mm256_fmadd_ps(scale, d, acc[m]);
                bias[m] += offset * sums[m * G + g];
            }
        }
        for (int m = 0; m < M; m++) y[m * N + n] = hsum(acc[m]) + bias[m];
    }
}
