/* The top logits of a large output layer, exactly, from an int8 copy of it plus a few exact rows.

   Greedy decoding needs only the largest logit, and top-k sampling only the k largest; every other logit is thrown
   away. For a large vocabulary the output layer is most of what a decode step reads (Gemma-3-270M: 335 of 536 MB
   in bfloat16), so head_top reads an int8 copy of it instead (half the bytes of bfloat16, a quarter of float32),
   with provable error bounds, and then the exact weights of the few rows that can still be among the top k:

   - The copy: q[j] = round(W[j] / s[j]) with one scale per row, s[j] = max |W[j]| / 127, so |W[j] - s[j] q[j]| is
     at most s[j] / 2 per weight. x is rounded to int16 with one scale (error f), and a[j] = s[j] dx sum q x16.
   - Then |W[j] . x - a[j]| <= s[j] (||x||_1 / 2 + 127 ||f||_1) = s[j] C, and the exact kernels (gemv.c) stay within
     s[j] 127 ||x||_1 (2^-15 + K 2^-22) of the true product; C includes both, with room to spare.
   - tau = the k-th largest lower bound a[j] - s[j] C. A row whose upper bound a[j] + s[j] C is below tau has k rows
     certainly above it, so it cannot be in the top k (nor tie with it); the others are the candidates.
   - The candidates' logits are computed with the same per-row code as the full product (gemv_*_rows), so they are
     bit-identical to it; every other logit is -inf. Argmax and top-k of this vector equal those of the full one.

   With float32 activations the bound is loose by about ten times the typical error, yet only some 10 of Gemma's 262144
   rows remain for greedy decoding (rounding x to int8 instead, as gemv_i8 does, left tens of thousands: decode
   activations have outliers). Returns the number of candidates; 0 when it cannot help (more than a quarter of the rows
   remain, x is zero, K % 32 != 0) and the caller computes every logit; -1 when out of memory. */

#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void gemv_bf16_rows(const float *x, const uint16_t *w, float *y, int64_t M, int64_t N, int64_t K, int threads,
                    const int64_t *rows);
void gemv_f32_rows(const float *x, const float *w, float *y, int64_t M, int64_t N, int64_t K, int threads,
                   const int64_t *rows);
int has_avx512_vnni(void); /* gemv.c: AVX512-F/BW/VNNI, and allowed */

/* the int8 copy is streamed like gemv.c's weights, with the same software prefetch (Gemma-3: 8.5 -> 6 ms) */
#define AHEAD 3072
static inline void ahead(const void *p) { _mm_prefetch((const char *)p + AHEAD, _MM_HINT_T0); }

#define CHUNK 2048 /* int32 lanes hold at most CHUNK / 8 products of 127 * 32767 (AVX2): < 2^31 */

static int64_t dot_avx2(const int8_t *row, const int16_t *x16, int64_t K) {
    int64_t total = 0;
    for (int64_t k0 = 0; k0 < K; k0 += CHUNK) {
        const int64_t end = k0 + CHUNK < K ? k0 + CHUNK : K;
        __m256i a0 = _mm256_setzero_si256(), a1 = a0;
        for (int64_t k = k0; k < end; k += 32) {
            ahead(row + k);
            __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(row + k)));
            __m256i w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(row + k + 16)));
            a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(w0, _mm256_loadu_si256((const __m256i *)(x16 + k))));
            a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(w1, _mm256_loadu_si256((const __m256i *)(x16 + k + 16))));
        }
        int32_t lanes[16];
        _mm256_storeu_si256((__m256i *)lanes, a0);
        _mm256_storeu_si256((__m256i *)(lanes + 8), a1);
        for (int i = 0; i < 16; i++) total += lanes[i];
    }
    return total;
}

#define AVX512_VNNI_BW __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

AVX512_VNNI_BW static int64_t dot_avx512(const int8_t *row, const int16_t *x16, int64_t K) {
    __m512i total = _mm512_setzero_si512();
    for (int64_t k0 = 0; k0 < K; k0 += CHUNK) {
        const int64_t end = k0 + CHUNK < K ? k0 + CHUNK : K;
        __m512i a0 = _mm512_setzero_si512(), a1 = a0;
        int64_t k = k0;
        for (; k + 64 <= end; k += 64) {
            ahead(row + k);
            __m512i w0 = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(row + k)));
            __m512i w1 = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(row + k + 32)));
            a0 = _mm512_dpwssd_epi32(a0, w0, _mm512_loadu_si512((const void *)(x16 + k)));
            a1 = _mm512_dpwssd_epi32(a1, w1, _mm512_loadu_si512((const void *)(x16 + k + 32)));
        }
        if (k < end)
            a0 = _mm512_dpwssd_epi32(a0, _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(row + k))),
                                     _mm512_loadu_si512((const void *)(x16 + k)));
        __m512i both = _mm512_add_epi32(a0, a1); /* < 2^31: CHUNK / 16 products per lane each */
        total = _mm512_add_epi64(total, _mm512_cvtepi32_epi64(_mm512_castsi512_si256(both)));
        total = _mm512_add_epi64(total, _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(both, 1)));
    }
    return _mm512_reduce_add_epi64(total);
}

/* dot_avx512 for M rows of x at once: each chunk of weights is widened once for all of them */
AVX512_VNNI_BW static void dots_avx512(const int8_t *row, const int16_t *x16, int64_t M, int64_t K, int64_t *out) {
    __m512i total[8];
    for (int64_t m = 0; m < M; m++) total[m] = _mm512_setzero_si512();
    for (int64_t k0 = 0; k0 < K; k0 += CHUNK) {
        const int64_t end = k0 + CHUNK < K ? k0 + CHUNK : K;
        __m512i acc[8];
        for (int64_t m = 0; m < M; m++) acc[m] = _mm512_setzero_si512();
        for (int64_t k = k0; k < end; k += 32) {
            ahead(row + k);
            __m512i w = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(row + k)));
            for (int64_t m = 0; m < M; m++)
                acc[m] = _mm512_dpwssd_epi32(acc[m], w, _mm512_loadu_si512((const void *)(x16 + m * K + k)));
        }
        for (int64_t m = 0; m < M; m++) {
            total[m] = _mm512_add_epi64(total[m], _mm512_cvtepi32_epi64(_mm512_castsi512_si256(acc[m])));
            total[m] = _mm512_add_epi64(total[m], _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(acc[m], 1)));
        }
    }
    for (int64_t m = 0; m < M; m++) out[m] = _mm512_reduce_add_epi64(total[m]);
}

/* keep the k largest values seen in a min-heap (heap[0] the smallest of them) */
static void heap_push(float *heap, int64_t *size, int64_t k, float v) {
    int64_t i;
    if (*size < k) {
        i = (*size)++;
        while (i > 0 && heap[(i - 1) / 2] > v) {
            heap[i] = heap[(i - 1) / 2];
            i = (i - 1) / 2;
        }
        heap[i] = v;
        return;
    }
    if (v <= heap[0]) return;
    i = 0;
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= k) break;
        if (c + 1 < k && heap[c + 1] < heap[c]) c++;
        if (heap[c] >= v) break;
        heap[i] = heap[c];
        i = c;
    }
    heap[i] = v;
}

/* how far the exact logit of a row may lie from its approximation a (C s, plus a's own float rounding) */
static inline float margin(float a, double C, float s) { return (float)(C * s) + fabsf(a) * 1e-6f; }

static int descending(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

#define MAX_M 8 /* rows of x per call, as gemv.c */

/* logits (M, N) of the rows of x (M, K) against the output layer W (N, K; float32 when w_kind is 0, bfloat16 when 1)
   with optional bias, keeping each row's `top` largest exactly and -inf elsewhere; q (N, K) int8 and s (N) are its
   copy; softcap > 0 applies cap * tanh(logit / cap) to what is kept (monotone, so the top rows are the same). The
   candidates of all rows are computed for every row, by gemv.c's code for M rows: the values are those of one full
   M-row product. */
int64_t head_top(const float *x, int64_t M, int64_t N, int64_t K, int64_t w_kind, const void *w, const float *bias,
                 const int8_t *q, const float *s, int64_t top, double softcap, float *logits, int threads) {
    if (K % 32 || top < 1 || N < 1 || M < 1 || M > MAX_M) return 0;
    if (top > N) top = N;
    double dx[MAX_M], C[MAX_M], tau[MAX_M];
    for (int64_t m = 0; m < M; m++) {
        double amax = 0.0, x_l1 = 0.0;
        for (int64_t i = 0; i < K; i++) {
            double a = fabs((double)x[m * K + i]);
            x_l1 += a;
            amax = a > amax ? a : amax;
        }
        if (amax == 0.0 || !isfinite(x_l1)) return 0; /* no bound to work with: every logit the usual way */
        dx[m] = amax / 32767.0;
        C[m] = x_l1;
    }
    int16_t *x16 = (int16_t *)aligned_alloc(64, sizeof(int16_t) * (size_t)(M * K));
    float *lower = (float *)malloc(sizeof(float) * (size_t)(threads * M * top));
    int64_t *found = (int64_t *)malloc(sizeof(int64_t) * (size_t)threads);
    int64_t *idx = (int64_t *)malloc(sizeof(int64_t) * (size_t)N);
    if (!x16 || !lower || !found || !idx) {
        free(x16), free(lower), free(found), free(idx);
        return -1;
    }
    for (int64_t m = 0; m < M; m++) {
        double f_l1 = 0.0;
        for (int64_t i = 0; i < K; i++) {
            long v = lrint((double)x[m * K + i] / dx[m]);
            v = v > 32767 ? 32767 : v < -32767 ? -32767 : v;
            x16[m * K + i] = (int16_t)v;
            f_l1 += fabs((double)x[m * K + i] - (double)v * dx[m]);
        }
        const double x_l1 = C[m];
        C[m] = 1.001 * (x_l1 * (0.5 + 127.0 * (ldexp(1.0, -15) + (double)K * ldexp(1.0, -22))) + 127.0 * f_l1);
    }
    const int wide = has_avx512_vnni();
    int nt = threads;
    /* pass 1: approximate logits, and each thread's `top` largest lower bounds of each row */
#pragma omp parallel num_threads(threads)
    {
        const int t = omp_get_thread_num(), T = omp_get_num_threads();
        const int64_t lo = N * t / T, hi = N * (t + 1) / T;
        int64_t size[MAX_M] = {0};
        for (int64_t j = lo; j < hi; j++) {
            int64_t d[MAX_M];
            if (wide && M > 1) dots_avx512(q + j * K, x16, M, K, d);
            else /* one row of x, or AVX2 (the int8 row stays in L1 across the rows of x) */
                for (int64_t m = 0; m < M; m++)
                    d[m] = wide ? dot_avx512(q + j * K, x16 + m * K, K) : dot_avx2(q + j * K, x16 + m * K, K);
            for (int64_t m = 0; m < M; m++) {
                float a = (float)((double)d[m] * dx[m] * (double)s[j]);
                if (bias) a += bias[j];
                logits[m * N + j] = a;
                heap_push(lower + (t * M + m) * top, size + m, top, a - margin(a, C[m], s[j]));
            }
        }
        for (int64_t m = 0; m < M; m++) /* fewer rows than top in this thread */
            for (int64_t i = size[m]; i < top; i++) lower[(t * M + m) * top + i] = -INFINITY;
#pragma omp single
        nt = T;
    }
    float *merged = (float *)malloc(sizeof(float) * (size_t)(nt * top));
    if (!merged) {
        free(x16), free(lower), free(found), free(idx);
        return -1;
    }
    for (int64_t m = 0; m < M; m++) {
        for (int t = 0; t < nt; t++) memcpy(merged + t * top, lower + (t * M + m) * top, sizeof(float) * (size_t)top);
        qsort(merged, (size_t)(nt * top), sizeof(float), descending);
        tau[m] = merged[top - 1];
        if (softcap > 0) { /* rows whose capped logit may round to the capped threshold stay candidates */
            double capped = tanh(tau[m] / softcap) - 1e-5;
            tau[m] = capped <= -1.0 ? -INFINITY : softcap * atanh(capped);
        }
    }
    free(merged);
    /* pass 2: the candidates of any row, in row order (each thread's at the start of its own range, then moved
       together) */
    int parts = nt;
#pragma omp parallel num_threads(nt)
    {
        const int t = omp_get_thread_num(), T = omp_get_num_threads();
        const int64_t lo = N * t / T, hi = N * (t + 1) / T;
        int64_t n = 0;
        for (int64_t j = lo; j < hi; j++) {
            int keep = 0;
            for (int64_t m = 0; m < M; m++) {
                float *a = logits + m * N + j;
                keep |= *a + margin(*a, C[m], s[j]) >= tau[m];
                *a = -INFINITY; /* the candidates' exact values come below (on giving up, the caller rewrites all) */
            }
            if (keep) idx[lo + n++] = j;
        }
        found[t] = n;
#pragma omp single
        parts = T;
    }
    int64_t count = 0;
    for (int t = 0; t < parts; t++) {
        const int64_t lo = N * t / parts;
        memmove(idx + count, idx + lo, sizeof(int64_t) * (size_t)found[t]);
        count += found[t];
    }
    float *exact = count > 0 && count <= N / 4 ? (float *)malloc(sizeof(float) * (size_t)(M * count)) : NULL;
    if (exact) {
        if (w_kind == 1) gemv_bf16_rows(x, (const uint16_t *)w, exact, M, count, K, threads, idx);
        else gemv_f32_rows(x, (const float *)w, exact, M, count, K, threads, idx);
        for (int64_t m = 0; m < M; m++)
            for (int64_t i = 0; i < count; i++) {
                float v = exact[m * count + i] + (bias ? bias[idx[i]] : 0.0f);
                logits[m * N + idx[i]] = softcap > 0 ? tanhf(v / (float)softcap) * (float)softcap : v;
            }
    }
    int64_t result = exact ? count : count > 0 && count <= N / 4 ? -1 : 0;
    free(exact), free(x16), free(lower), free(found), free(idx);
    return result;
}

static inline __m256 load8(const void *w, int64_t w_kind, int64_t at) {
    if (w_kind == 1) {
        __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + at)));
        return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
    }
    return _mm256_loadu_ps((const float *)w + at);
}

/* The int8 copy head_top reads: q[j] = round(W[j] / s[j]) (to nearest even), s[j] = max |W[j]| / 127 (0 for a zero
   row). Needs K % 8 == 0. */
void head_screen(const void *w, int64_t w_kind, int64_t N, int64_t K, int8_t *q, float *s, int threads) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t j = 0; j < N; j++) {
        __m256 m = _mm256_setzero_ps();
        for (int64_t k = 0; k < K; k += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, load8(w, w_kind, j * K + k)));
        float lanes[8], amax = 0.0f;
        _mm256_storeu_ps(lanes, m);
        for (int t = 0; t < 8; t++) amax = lanes[t] > amax ? lanes[t] : amax;
        const float scale = amax / 127.0f;
        const __m256 inv = _mm256_set1_ps(amax > 0 ? 1.0f / scale : 0.0f);
        for (int64_t k = 0; k < K; k += 8) {
            __m256i v = _mm256_cvtps_epi32(_mm256_mul_ps(load8(w, w_kind, j * K + k), inv));
            v = _mm256_max_epi32(_mm256_min_epi32(v, _mm256_set1_epi32(127)), _mm256_set1_epi32(-127));
            __m128i h = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
            _mm_storel_epi64((__m128i *)(q + j * K + k), _mm_packs_epi16(h, h));
        }
        s[j] = scale;
    }
}
