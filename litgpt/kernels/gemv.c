/* Matrix-vector kernels for decoding on x86-64 CPUs with AVX2 + FMA.

   y[m, n] = sum_k x[m, k] * W[n, k] for a few rows of x (m < M <= 8) and a weight W stored as
     - bf16:  uint16 bfloat16 bits, (N, K)
     - f32:   float, (N, K)
     - i8:    int8 codes, (N, K), one float scale per output row: W[n, k] = q[n, k] * scale[n]
     - i4:    4-bit codes in groups of 32 input features, (N, K / 2) bytes; in group g, byte j holds feature
              32 g + j in its low nibble and feature 32 g + 16 + j in its high nibble;
              W[n, k] = (q - 8) * scale[n, g] + zero[n, g], scale and zero float16 (uint16 bits)
   x and y are float32 (i8 and i4 round x to int8 blocks first, see below; they return 0 when they cannot run:
   K % 32 != 0, M > MAX_M or no memory). Decoding reads every weight once per token, so these kernels are bound by memory
   bandwidth: each weight row is loaded once and multiplied with all M rows of x, the dequantization is fused
   into the multiply, and rows are split across OpenMP threads (the process's libgomp, shared with PyTorch).
   For f32/bf16, tails of K that are not a multiple of 8 are handled by scalar code. */

#include <immintrin.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "simd.h"

#define MAX_M 8

/* Each thread streams its rows of W from memory, and a core alone does not keep enough reads in flight for that:
   the L2 streamer stops at every 4 KB boundary and restarts slowly. So every loop below asks for the cache line
   AHEAD bytes past the one it loads (_mm_prefetch, one per 64 bytes read). On a 2-core Xeon (AMX) VM this took a
   decode step of SmolLM2-135M in int8 from 8.0 to 5.4 ms, int4 7.5 to 5.2, float32 18.9 to 16.2, and Gemma-3-270M
   in bfloat16 17.7 to 14.6 ms (with head.c's); the AVX2 paths 1.6-2x faster. The AVX512-BF16 kernel takes a line in
   fewer instructions and did best with a shorter distance (AHEAD_BF16; 3072 bytes there gained nothing). */
#define AHEAD 3072
#define AHEAD_BF16 1024
static inline void ahead(const void *p, int bytes) { _mm_prefetch((const char *)p + bytes, _MM_HINT_T0); }

static inline __m256 load8_i8(const int8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}

static inline __m256 load8_f16(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }

/* One weight row against M rows of x; LOAD8 loads 8 weights as floats, ONE converts a single weight. Two
   accumulators per x row hide the FMA latency when M is 1. */
#define ROW_DOT(LOAD8, ONE)                                                                        \
    do {                                                                                           \
        __m256 acc0[MAX_M], acc1[MAX_M];                                                           \
        for (int m = 0; m < M; m++) acc0[m] = acc1[m] = _mm256_setzero_ps();                       \
        int64_t k = 0;                                                                             \
        for (; k + 16 <= K; k += 16) {                                                             \
            ahead(row + k, AHEAD);                                                                 \
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
#define ROW(n) (rows ? rows[n] : (n)) /* the weight row of output n: every row, or a chosen few (head.c) */
#define AS_FLOAT(v) ((float)(v))

/* bfloat16 weights, K % 16 == 0: 16 weights (one 32-byte load) hold 8 even-indexed values in the low halves of
   their 32-bit lanes and 8 odd-indexed ones in the high halves. A shift and a mask turn them into two float
   vectors without any shuffle, to be multiplied with x's even and odd elements (split once per call). */
static void gemv_bf16_pairs(const float *x, const uint16_t *w, float *y, int64_t M, int64_t N, int64_t K,
                            int threads, const int64_t *rows) {
    const int64_t H = K / 2;
    float *split = (float *)malloc(sizeof(float) * (size_t)(M * K));
    if (!split) return;
    for (int64_t m = 0; m < M; m++)
        for (int64_t i = 0; i < H; i++) {
            split[m * K + i] = x[m * K + 2 * i];          /* even elements first */
            split[m * K + H + i] = x[m * K + 2 * i + 1];  /* then odd ones */
        }
    const __m256i high = _mm256_set1_epi32((int)0xFFFF0000u);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const uint16_t *row = w + ROW(n) * K;
        __m256 acc0[MAX_M], acc1[MAX_M];
        for (int m = 0; m < M; m++) acc0[m] = acc1[m] = _mm256_setzero_ps();
        for (int64_t k = 0; k < K; k += 16) {
            ahead(row + k, AHEAD);
            __m256i v = _mm256_loadu_si256((const __m256i *)(row + k));
            __m256 even = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
            __m256 odd = _mm256_castsi256_ps(_mm256_and_si256(v, high));
            for (int m = 0; m < M; m++) {
                const float *xs = split + m * K + k / 2;
                acc0[m] = _mm256_fmadd_ps(even, _mm256_loadu_ps(xs), acc0[m]);
                acc1[m] = _mm256_fmadd_ps(odd, _mm256_loadu_ps(xs + H), acc1[m]);
            }
        }
        for (int m = 0; m < M; m++) y[m * N + n] = hsum(_mm256_add_ps(acc0[m], acc1[m]));
    }
    free(split);
}

/* CPUs with AVX512-BF16 (checked at run time; the rest of this file needs only AVX2) multiply bfloat16 pairs in
   one instruction (vdpbf16ps: 32 products a 64-byte load, accumulated in float32). Its other operand must be
   bfloat16 too, so x is split into a bfloat16 head and the bfloat16 rounding of what remains (x - head): two
   products per weight keep x to about 16 bits of mantissa (float32 activations in effect) at a third of the
   instructions of converting every weight to float32. Needs K % 32 == 0. */
#define AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

static int avx512_allowed = 1;

void allow_avx512(int on) { avx512_allowed = on; } /* 0: the AVX2 paths only (tests, LITGPT_KERNELS_AVX512=0) */

int has_avx512_bf16(void) {
    static int known = -1;
    if (known < 0) known = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
    return known && avx512_allowed;
}

AVX512_BF16 static void gemv_bf16_avx512(const float *x, const uint16_t *w, float *y, int64_t M, int64_t N,
                                         int64_t K, int threads, const int64_t *rows) {
    const int64_t C = K / 32;
    __m512bh *head = (__m512bh *)aligned_alloc(64, sizeof(__m512bh) * (size_t)(M * C));
    __m512bh *rest = (__m512bh *)aligned_alloc(64, sizeof(__m512bh) * (size_t)(M * C));
    if (!head || !rest) {
        free(head);
        free(rest);
        return;
    }
    for (int64_t m = 0; m < M; m++)
        for (int64_t c = 0; c < C; c++) {
            const float *xs = x + m * K + c * 32;
            __m512 lo = _mm512_loadu_ps(xs), hi = _mm512_loadu_ps(xs + 16);
            __m512bh h = _mm512_cvtne2ps_pbh(hi, lo);
            /* the head back in float32: bfloat16 bits in the high halves of 32-bit lanes */
            __m512i hb = (__m512i)h;
            __m512 h_lo = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(hb)), 16));
            __m512 h_hi =
                _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(hb, 1)), 16));
            head[m * C + c] = h;
            rest[m * C + c] = _mm512_cvtne2ps_pbh(_mm512_sub_ps(hi, h_hi), _mm512_sub_ps(lo, h_lo));
        }
    if (M == 1) { /* decoding one sequence: four independent sums per row hide vdpbf16ps's latency */
#pragma omp parallel for num_threads(threads) schedule(static)
        for (int64_t n = 0; n < N; n++) {
            const uint16_t *row = w + ROW(n) * K;
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            int64_t c = 0;
            for (; c + 2 <= C; c += 2) {
                __m512bh w0 = (__m512bh)_mm512_loadu_si512((const void *)(row + c * 32));
                __m512bh w1 = (__m512bh)_mm512_loadu_si512((const void *)(row + c * 32 + 32));
                ahead(row + c * 32, AHEAD_BF16);
                ahead(row + c * 32 + 32, AHEAD_BF16);
                a0 = _mm512_dpbf16_ps(a0, w0, head[c]);
                a1 = _mm512_dpbf16_ps(a1, w0, rest[c]);
                a2 = _mm512_dpbf16_ps(a2, w1, head[c + 1]);
                a3 = _mm512_dpbf16_ps(a3, w1, rest[c + 1]);
            }
            if (c < C) {
                __m512bh w0 = (__m512bh)_mm512_loadu_si512((const void *)(row + c * 32));
                a0 = _mm512_dpbf16_ps(a0, w0, head[c]);
                a1 = _mm512_dpbf16_ps(a1, w0, rest[c]);
            }
            y[n] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
        }
        free(head);
        free(rest);
        return;
    }
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const uint16_t *row = w + ROW(n) * K;
        __m512 acc[MAX_M];
        for (int m = 0; m < M; m++) acc[m] = _mm512_setzero_ps();
        for (int64_t c = 0; c < C; c++) {
            __m512bh wv = (__m512bh)_mm512_loadu_si512((const void *)(row + c * 32));
            ahead(row + c * 32, AHEAD_BF16);
            for (int m = 0; m < M; m++) {
                acc[m] = _mm512_dpbf16_ps(acc[m], wv, head[m * C + c]);
                acc[m] = _mm512_dpbf16_ps(acc[m], wv, rest[m * C + c]);
            }
        }
        for (int m = 0; m < M; m++) y[m * N + n] = _mm512_reduce_add_ps(acc[m]);
    }
    free(head);
    free(rest);
}

/* y[m, i] = x[m] . W[rows[i]] for i < N (rows == NULL: every row, y = x @ W.T): the same per-row arithmetic
   either way, so a row's value does not depend on which other rows are computed (head.c relies on this). */
void gemv_bf16_rows(const float *x, const uint16_t *w, float *y, int64_t M, int64_t N, int64_t K, int threads,
                    const int64_t *rows) {
    if (K % 32 == 0 && has_avx512_bf16()) {
        gemv_bf16_avx512(x, w, y, M, N, K, threads, rows);
        return;
    }
    if (K % 16 == 0) {
        gemv_bf16_pairs(x, w, y, M, N, K, threads, rows);
        return;
    }
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const uint16_t *row = w + ROW(n) * K;
        float out[MAX_M];
        ROW_DOT(load8_bf16, bf16_value);
        for (int m = 0; m < M; m++) y[m * N + n] = out[m];
    }
}

void gemv_f32_rows(const float *x, const float *w, float *y, int64_t M, int64_t N, int64_t K, int threads,
                   const int64_t *rows) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float *row = w + ROW(n) * K;
        float out[MAX_M];
        ROW_DOT(_mm256_loadu_ps, IDENTITY);
        for (int m = 0; m < M; m++) y[m * N + n] = out[m];
    }
}

void gemv_bf16(const float *x, const uint16_t *w, float *y, int64_t M, int64_t N, int64_t K, int threads) {
    gemv_bf16_rows(x, w, y, M, N, K, threads, NULL);
}

void gemv_f32(const float *x, const float *w, float *y, int64_t M, int64_t N, int64_t K, int threads) {
    gemv_f32_rows(x, w, y, M, N, K, threads, NULL);
}

/* Quantized weights take integer dot products, as llama.cpp does: each row of x is first rounded to int8 in blocks
   of 32 with one float scale per block (xq, xd), then 32 weight codes at a time are multiplied with maddubs
   (unsigned x signed bytes -> 16-bit pair sums) and madd (-> 32-bit sums); one float multiply-add per block
   applies the scales. This does a quarter of the work of converting every weight to float, which is what limits
   int8/int4 on a CPU with two cores; the cost is rounding the activations to 8 bits (a relative error of about
   0.2%, far below the weights' own). Needs K % 32 == 0. */
typedef struct {
    int8_t *q;    /* (M, K) */
    float *d;     /* (M, K / 32): scale of each block */
    float *sum;   /* (M, K / 32): sum of the rounded x over each block (int4's zero term; using the rounded
                     values keeps that term consistent with the codes' term, whose weights are all positive,
                     so rounding errors do not add up into an offset shared by every output) */
} QuantX;

static int quantize_x(const float *x, int64_t M, int64_t K, QuantX *out) {
    const int64_t B = K / 32;
    out->q = (int8_t *)malloc((size_t)(M * K));
    out->d = (float *)malloc(sizeof(float) * (size_t)(M * B));
    out->sum = (float *)malloc(sizeof(float) * (size_t)(M * B));
    if (!out->q || !out->d || !out->sum) return 0;
    for (int64_t m = 0; m < M; m++)
        for (int64_t b = 0; b < B; b++) {
            const float *xb = x + m * K + b * 32;
            float amax = 0.0f;
            for (int t = 0; t < 32; t++) {
                float a = xb[t] < 0 ? -xb[t] : xb[t];
                amax = a > amax ? a : amax;
            }
            float d = amax / 127.0f, inv = amax > 0 ? 127.0f / amax : 0.0f;
            int8_t *qb = out->q + m * K + b * 32;
            int total = 0;
            for (int t = 0; t < 32; t++) {
                qb[t] = (int8_t)lrintf(xb[t] * inv);
                total += qb[t];
            }
            out->d[m * B + b] = d;
            out->sum[m * B + b] = (float)total * d;
        }
    return 1;
}

static void free_x(QuantX *x) {
    free(x->q);
    free(x->d);
    free(x->sum);
}

static inline __m256 block_dot(__m256i w_unsigned_or_signed, __m256i xq, int signed_weights) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i pairs;
    if (signed_weights) /* maddubs wants its first operand unsigned: move x's sign onto w */
        pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(xq, xq), _mm256_sign_epi8(w_unsigned_or_signed, xq));
    else
        pairs = _mm256_maddubs_epi16(w_unsigned_or_signed, xq);
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, ones));
}

/* One row of x against int8 weights on CPUs with AVX512-VNNI: vpdpbusd multiplies 64 unsigned by 64 signed bytes
   into 16 int32 sums of four in one instruction. The weights are made unsigned on the fly (w ^ 0x80 = w + 128), and
   the 128 * x that this adds is taken out up front: each int32 lane starts from -128 times the sum of its four x
   values. Lanes 0-7 then hold block 2p's products and lanes 8-15 block 2p+1's, each multiplied by its block scale
   in float32. Same arithmetic as the AVX2 path (exact integer sums, float32 block scaling). */
#define AVX512_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

int has_avx512_vnni(void) { /* also head.c's */
    static int known = -1;
    if (known < 0) known = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                           __builtin_cpu_supports("avx512vnni");
    return known && avx512_allowed;
}

/* The rounded row of x laid out for the VNNI kernels: its int8 values zero-padded to whole pairs of blocks (P pairs,
   64 bytes each) and, per int32 lane of a pair (16 lanes, 8 per block), its block's scale (0 past the end). */
typedef struct {
    int8_t *q;
    float *d;
} PairedX;

/* zeroed room for P pairs of blocks: 64 x values and 16 lane scales each */
static int alloc_paired(int64_t P, PairedX *out) {
    out->q = (int8_t *)aligned_alloc(64, (size_t)(64 * P));
    out->d = (float *)aligned_alloc(64, sizeof(float) * (size_t)(16 * P));
    if (!out->q || !out->d) return 0;
    memset(out->q, 0, (size_t)(64 * P));
    return 1;
}

static int pair_x(const QuantX *xq, int64_t K, PairedX *out) {
    const int64_t B = K / 32, P = (B + 1) / 2;
    if (!alloc_paired(P, out)) return 0;
    memcpy(out->q, xq->q, (size_t)K);
    for (int64_t lane = 0; lane < 16 * P; lane++) out->d[lane] = lane / 8 < B ? xq->d[lane / 8] : 0.0f;
    return 1;
}

static void free_paired(PairedX *x) {
    free(x->q);
    free(x->d);
}

AVX512_VNNI static int gemv_i8_vnni(const QuantX *xq, const int8_t *w, const float *scales, float *y, int64_t N,
                                    int64_t K, int threads) {
    const int64_t B = K / 32, P = (B + 1) / 2, L = 16 * P; /* pairs of blocks; lanes (the last pair may be half) */
    PairedX px = {0};
    int32_t *start = (int32_t *)aligned_alloc(64, sizeof(int32_t) * (size_t)L);
    if (!start || !pair_x(xq, K, &px)) {
        free(start);
        free_paired(&px);
        return 0;
    }
    const int8_t *xs = px.q;
    const float *scale = px.d;
    for (int64_t lane = 0; lane < L; lane++) {
        const int8_t *four = xs + 4 * lane;
        start[lane] = -128 * (four[0] + four[1] + four[2] + four[3]);
    }
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    const __mmask64 half = 0xFFFFFFFFull; /* the last pair of an odd number of blocks */
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const int8_t *row = w + n * K;
        __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0;
        for (int64_t p = 0; p < P; p++) {
            ahead(row + 64 * p, AHEAD);
            __m512i wv = 2 * p + 1 < B ? _mm512_loadu_si512((const void *)(row + 64 * p))
                                       : _mm512_maskz_loadu_epi8(half, (const void *)(row + 64 * p));
            __m512i sums = _mm512_dpbusd_epi32(_mm512_load_si512((const void *)(start + 16 * p)),
                                               _mm512_xor_si512(wv, flip),
                                               _mm512_load_si512((const void *)(xs + 64 * p)));
            __m512 term = _mm512_mul_ps(_mm512_cvtepi32_ps(sums), _mm512_load_ps(scale + 16 * p));
            if (p & 1) acc1 = _mm512_add_ps(acc1, term);
            else acc0 = _mm512_add_ps(acc0, term);
        }
        y[n] = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) * scales[n];
    }
    free(start);
    free_paired(&px);
    return 1;
}

int gemv_i8(const float *x, const int8_t *w, const float *scales, float *y, int64_t M, int64_t N, int64_t K,
            int threads) {
    QuantX xq;
    if (K % 32 || M > MAX_M || !quantize_x(x, M, K, &xq)) return 0;
    const int64_t B = K / 32;
    if (M == 1 && has_avx512_vnni()) {
        int ok = gemv_i8_vnni(&xq, w, scales, y, N, K, threads);
        free_x(&xq);
        return ok;
    }
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const int8_t *row = w + n * K;
        __m256 acc[MAX_M];
        for (int m = 0; m < M; m++) acc[m] = _mm256_setzero_ps();
        for (int64_t b = 0; b < B; b++) {
            ahead(row + b * 32, AHEAD);
            __m256i wv = _mm256_loadu_si256((const __m256i *)(row + b * 32));
            for (int m = 0; m < M; m++) {
                __m256i xv = _mm256_loadu_si256((const __m256i *)(xq.q + m * K + b * 32));
                acc[m] = _mm256_fmadd_ps(block_dot(wv, xv, 1), _mm256_set1_ps(xq.d[m * B + b]), acc[m]);
            }
        }
        for (int m = 0; m < M; m++) y[m * N + n] = hsum(acc[m]) * scales[n];
    }
    free_x(&xq);
    return 1;
}

/* int4 block scales and zeros are float16 (an eighth of a byte per weight each, against a quarter in float32). Each
   row's are converted up front into float32 scales sf[0:B] (sf[B] = 0: the missing half of a last pair) and the
   offsets off[b] = zero - 8 scale that (q - 8) * scale + zero adds to every weight of block b beyond q * scale. */
#define MAX_BLOCKS 2048 /* rows of up to 65,536 features (gemv_i4 returns 0 beyond) */

static inline void i4_row(const uint16_t *sc, const uint16_t *ze, int64_t B, float *sf, float *off) {
    int64_t b = 0;
    for (; b + 8 <= B; b += 8) {
        const __m256 s = load8_f16(sc + b);
        _mm256_storeu_ps(sf + b, s);
        _mm256_storeu_ps(off + b, _mm256_fnmadd_ps(_mm256_set1_ps(8.0f), s, load8_f16(ze + b)));
    }
    for (; b < B; b++) {
        sf[b] = _cvtsh_ss(sc[b]);
        off[b] = _cvtsh_ss(ze[b]) - 8.0f * sf[b];
    }
    sf[B] = 0.0f;
}

/* sum of a[b] * x[b] over b < n */
static inline float dot_blocks(const float *a, const float *x, int64_t n) {
    __m256 acc = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 8 <= n; b += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + b), _mm256_loadu_ps(x + b), acc);
    float total = hsum(acc);
    for (; b < n; b++) total += a[b] * x[b];
    return total;
}

/* int4 on CPUs with AVX512-VNNI, one row of x: the 32 bytes of blocks 2p and 2p+1 are loaded into both halves of a
   register, the upper half shifted by 4, and the nibbles masked: 64 codes (unsigned, 0-15) in the order low nibbles
   of both blocks, then high nibbles (block 2p features 0-15, block 2p+1 features 0-15, then features 16-31 of each),
   and x is laid out in that order once (pair_x4), so one vpdpbusd multiplies them with 64 int8 x values without
   shuffling the codes. Lanes 0-3 and 8-11 hold block 2p's sums, lanes 4-7 and 12-15 block 2p+1's; each is scaled by
   its weight scale times x's block scale. The zero-point term is the AVX2 path's. */
static int pair_x4(const QuantX *xq, int64_t K, PairedX *out) {
    const int64_t B = K / 32, P = (B + 1) / 2;
    if (!alloc_paired(P, out)) return 0;
    for (int64_t b = 0; b < B; b++) { /* block b = 2p + odd: features 0-15 at 16 odd, 16-31 at 32 + 16 odd */
        const int64_t p = b / 2, odd = b % 2;
        memcpy(out->q + 64 * p + 16 * odd, xq->q + 32 * b, 16);
        memcpy(out->q + 64 * p + 32 + 16 * odd, xq->q + 32 * b + 16, 16);
    }
    for (int64_t lane = 0; lane < 16 * P; lane++) {
        const int64_t b = 2 * (lane / 16) + (lane / 4) % 2;
        out->d[lane] = b < B ? xq->d[b] : 0.0f;
    }
    return 1;
}

AVX512_VNNI static int gemv_i4_vnni(const QuantX *xq, const uint8_t *w, const uint16_t *scales, const uint16_t *zeros,
                                    float *y, int64_t N, int64_t K, int threads) {
    const int64_t B = K / 32, P = (B + 1) / 2;
    PairedX px = {0};
    if (!pair_x4(xq, K, &px)) {
        free_paired(&px);
        return 0;
    }
    const int8_t *xs = px.q;
    const float *dlane = px.d;
    const __m512i shifts = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
    const __m512i nibble = _mm512_set1_epi8(0x0F);
    const __m512i pick = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1); /* lane -> block */
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const uint8_t *row = w + n * (K / 2);
        float sc[MAX_BLOCKS + 1], off[MAX_BLOCKS];
        i4_row(scales + n * B, zeros + n * B, B, sc, off);
        __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0;
        for (int64_t p = 0; p < P; p++) {
            ahead(row + 32 * p, AHEAD);
            __m256i v = 2 * p + 1 < B ? _mm256_loadu_si256((const __m256i *)(row + 32 * p))
                                      : _mm256_zextsi128_si256(_mm_loadu_si128((const __m128i *)(row + 32 * p)));
            __m512i codes = _mm512_and_si512(_mm512_srlv_epi16(_mm512_broadcast_i64x4(v), shifts), nibble);
            __m512i sums = _mm512_dpbusd_epi32(_mm512_setzero_si512(), codes,
                                               _mm512_load_si512((const void *)(xs + 64 * p)));
            const __m128 two = _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)(sc + 2 * p))); /* sc[2p], sc[2p+1] */
            __m512 rs = _mm512_permutexvar_ps(pick, _mm512_castps128_ps512(two));
            __m512 scale = _mm512_mul_ps(rs, _mm512_load_ps(dlane + 16 * p));
            if (p & 1) acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), scale, acc1);
            else acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), scale, acc0);
        }
        y[n] = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) + dot_blocks(off, xq->sum, B);
    }
    free_paired(&px);
    return 1;
}

int gemv_i4(const float *x, const uint8_t *w, const uint16_t *scales, const uint16_t *zeros, float *y, int64_t M,
            int64_t N, int64_t K, int threads) {
    QuantX xq;
    if (K % 32 || K / 32 > MAX_BLOCKS || M > MAX_M || !quantize_x(x, M, K, &xq)) return 0;
    const int64_t B = K / 32;
    if (M == 1 && has_avx512_vnni()) {
        int ok = gemv_i4_vnni(&xq, w, scales, zeros, y, N, K, threads);
        free_x(&xq);
        return ok;
    }
    const __m128i low = _mm_set1_epi8(0x0F);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const uint8_t *row = w + n * (K / 2);
        float sc[MAX_BLOCKS + 1], off[MAX_BLOCKS];
        i4_row(scales + n * B, zeros + n * B, B, sc, off);
        __m256 acc[MAX_M];
        for (int m = 0; m < M; m++) acc[m] = _mm256_setzero_ps();
        for (int64_t b = 0; b < B; b++) {
            ahead(row + b * 16, AHEAD);
            __m128i bytes = _mm_loadu_si128((const __m128i *)(row + b * 16));
            __m128i lo = _mm_and_si128(bytes, low), hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), low);
            __m256i codes = _mm256_set_m128i(hi, lo); /* features 0..15, then 16..31 of the block */
            for (int m = 0; m < M; m++) {
                __m256i xv = _mm256_loadu_si256((const __m256i *)(xq.q + m * K + b * 32));
                __m256 scale = _mm256_set1_ps(sc[b] * xq.d[m * B + b]);
                acc[m] = _mm256_fmadd_ps(block_dot(codes, xv, 0), scale, acc[m]);
            }
        }
        for (int m = 0; m < M; m++) y[m * N + n] = hsum(acc[m]) + dot_blocks(off, xq.sum + m * B, B);
    }
    free_x(&xq);
    return 1;
}

/* The float32 weight (N, K) that int8 codes with one scale per row stand for: q[n, k] * scales[n]. For products of
   more rows than MAX_M (a prefill), which a float32 matrix product then computes from it. */
void dequant_i8(const int8_t *q, const float *scales, float *out, int64_t N, int64_t K, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const __m256 s = _mm256_set1_ps(scales[n]);
        int64_t k = 0;
        for (; k + 8 <= K; k += 8) {
            __m256i v = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(q + n * K + k)));
            _mm256_storeu_ps(out + n * K + k, _mm256_mul_ps(_mm256_cvtepi32_ps(v), s));
        }
        for (; k < K; k++) out[n * K + k] = (float)q[n * K + k] * scales[n];
    }
}

/* The float32 weight (N, K) that gemv_i4's codes stand for (layout at the top): (code - 8) * scale + zero, with one
   scale and zero per block of 32 features. K % 32 == 0. */
void dequant_i4(const uint8_t *w, const uint16_t *scales, const uint16_t *zeros, float *out, int64_t N, int64_t K,
                int threads) {
    const int64_t B = K / 32;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t n = 0; n < N; n++)
        for (int64_t b = 0; b < B; b++) {
            const uint8_t *bytes = w + n * (K / 2) + b * 16;
            const __m256 s = _mm256_set1_ps(_cvtsh_ss(scales[n * B + b]));
            const __m256 z = _mm256_set1_ps(_cvtsh_ss(zeros[n * B + b]));
            const __m256i eight = _mm256_set1_epi32(8);
            float *o = out + n * K + b * 32;
            for (int h = 0; h < 16; h += 8) { /* bytes h..h+7: features h.. (low nibbles) and 16 + h.. (high) */
                __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(bytes + h)));
                __m256i lo = _mm256_sub_epi32(_mm256_and_si256(v, _mm256_set1_epi32(15)), eight);
                __m256i hi = _mm256_sub_epi32(_mm256_srli_epi32(v, 4), eight);
                _mm256_storeu_ps(o + h, _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(lo), s), z));
                _mm256_storeu_ps(o + 16 + h, _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(hi), s), z));
            }
        }
}
