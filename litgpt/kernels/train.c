// Cross entropy of logit rows, forward and backward in one pass over each row (AVX2 + FMA, OpenMP).
//
// For each row r of `logits` (float32 or bfloat16, `vocab` wide, rows `stride` elements apart) and its target t:
//     loss[r] = logsumexp(z) - z[t]
// and the row is overwritten, in its own dtype, with the gradient of that loss times `scale` (the loss's 1 / N):
//     scale * (softmax(z) - onehot(t))
// A row is read three times (maximum; exponentials into a float scratch row; normalise and store), but a row of
// 49152 bfloat16 logits is 96 KB and the scratch 192 KB, so all but the first read come from the core's L2 cache.
// PyTorch's log_softmax + backward on a float32 copy of the logits makes about eight passes through main memory.
// Targets outside [0, vocab) are refused (return 0) before anything is written.

#include <immintrin.h>
#include <omp.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "simd.h"

// e^x for x <= 0 (inputs below -87 are clamped there: their e^x is below 1e-38 and vanishes in any sum with 1).
// x = n ln2 + r with |r| <= ln2 / 2; e^r by its Taylor series to degree 7 (relative error < 1e-8).
// The constants are shared with the 16-lane form (exp_nonpositive16, gated units).
#define EXP_MIN (-87.0f)
#define LOG2E 1.44269504088896341f
#define LN2_HI 0.693359375f  // ln2 split in two for an exact product
#define LN2_LO (-2.12194440e-4f)
static const float EXP_TAYLOR[8] = {1.0f / 5040, 1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f};

static inline __m256 exp_nonpositive(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(EXP_MIN));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x));
    __m256 p = _mm256_set1_ps(EXP_TAYLOR[0]);
    for (int c = 1; c < 8; c++) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_TAYLOR[c]));
    __m256i scale = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(scale));
}

static inline __m256 load_bf16(const uint16_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}

static inline void store_bf16(uint16_t *p, __m256 v) {  // round to nearest even (values here are finite)
    __m256i bits = _mm256_castps_si256(v);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
    bits = _mm256_srli_epi32(_mm256_add_epi32(bits, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
    __m128i packed = _mm_packus_epi32(_mm256_castsi256_si128(bits), _mm256_extracti128_si256(bits, 1));
    _mm_storeu_si128((__m128i *)p, packed);
}

// One row: `z` holds `vocab` logits (bf16 when `is_bf16`), `e` is float scratch of at least `vocab`.
static float xent_row(void *z, int is_bf16, int64_t vocab, int64_t target, float scale, float *e) {
    const uint16_t *zb = (const uint16_t *)z;
    const float *zf = (const float *)z;
    int64_t body = vocab & ~(int64_t)7, j;
    __m256 vmax = _mm256_set1_ps(-INFINITY);
    for (j = 0; j < body; j += 8) vmax = _mm256_max_ps(vmax, is_bf16 ? load_bf16(zb + j) : _mm256_loadu_ps(zf + j));
    float max = hmax(vmax);
    for (; j < vocab; j++) max = fmaxf(max, is_bf16 ? bf16_value(zb[j]) : zf[j]);

    __m256 vm = _mm256_set1_ps(max), vsum = _mm256_setzero_ps();
    for (j = 0; j < body; j += 8) {
        __m256 x = is_bf16 ? load_bf16(zb + j) : _mm256_loadu_ps(zf + j);
        __m256 ex = exp_nonpositive(_mm256_sub_ps(x, vm));
        _mm256_storeu_ps(e + j, ex);
        vsum = _mm256_add_ps(vsum, ex);
    }
    float sum = hsum(vsum);
    for (; j < vocab; j++) {
        e[j] = expf((is_bf16 ? bf16_value(zb[j]) : zf[j]) - max);
        sum += e[j];
    }
    float target_logit = is_bf16 ? bf16_value(zb[target]) : zf[target];
    float loss = max + logf(sum) - target_logit;

    float inv = scale / sum;
    __m256 vinv = _mm256_set1_ps(inv);
    e[target] -= sum;  // (e[t] - sum) / sum = softmax[t] - 1, rounded once
    if (is_bf16) {
        uint16_t *out = (uint16_t *)z;
        for (j = 0; j < body; j += 8) store_bf16(out + j, _mm256_mul_ps(_mm256_loadu_ps(e + j), vinv));
        for (; j < vocab; j++) out[j] = bf16_round(e[j] * inv);
    } else {
        float *out = (float *)z;
        for (j = 0; j < body; j += 8) _mm256_storeu_ps(out + j, _mm256_mul_ps(_mm256_loadu_ps(e + j), vinv));
        for (; j < vocab; j++) out[j] = e[j] * inv;
    }
    return loss;
}

// Returns 1, or 0 (nothing written) when a target is out of range or scratch memory is short.
int xent_rows(void *logits, int is_bf16, int64_t rows, int64_t vocab, int64_t stride, const int64_t *targets,
              float scale, float *loss, int threads) {
    for (int64_t r = 0; r < rows; r++)
        if (targets[r] < 0 || targets[r] >= vocab) return 0;
    int failed = 0;
    int64_t elt = is_bf16 ? 2 : 4;
#pragma omp parallel num_threads(threads)
    {
        float *e = (float *)aligned_alloc(64, ((vocab * sizeof(float) + 63) / 64) * 64);
        if (e == NULL) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp barrier
        if (!failed) {
#pragma omp for schedule(static)
            for (int64_t r = 0; r < rows; r++)
                loss[r] = xent_row((char *)logits + r * stride * elt, is_bf16, vocab, targets[r], scale, e);
        }
        free(e);
    }
    return !failed;
}

// ------------------------------------------------------------------------------------------------------- dropout
// splitmix64: a counter-based generator, so element i's draw depends on (seed, i) only, not on threads or order.
static inline uint64_t splitmix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

// Fill `mask` (n float32 or bfloat16 values) with 0 for a dropped element and 1 / (1 - p) for a kept one. Element
// 2k uses the low 32 bits of splitmix64(seed + k), element 2k + 1 the high ones; it is dropped when they are
// below p * 2^32.
void dropout_mask(void *mask, int is_bf16, int64_t n, double p, uint64_t seed, int threads) {
    uint32_t threshold = p >= 1.0 ? 0xffffffffu : (uint32_t)(p * 4294967296.0);
    float keep = (float)(1.0 / (1.0 - p));
    uint16_t keep_bf16 = bf16_round(keep);
    int64_t pairs = (n + 1) / 2;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t k = 0; k < pairs; k++) {
        uint64_t bits = splitmix64(seed + (uint64_t)k);
        uint32_t draw[2] = {(uint32_t)bits, (uint32_t)(bits >> 32)};
        for (int h = 0; h < 2 && 2 * k + h < n; h++) {
            int kept = draw[h] >= threshold;
            if (is_bf16)
                ((uint16_t *)mask)[2 * k + h] = kept ? keep_bf16 : 0;
            else
                ((float *)mask)[2 * k + h] = kept ? keep : 0.0f;
        }
    }
}

// ------------------------------------------------------------------------------------------------------ RMSNorm
// y = x * rstd * w with rstd = 1 / sqrt(mean(x^2) + eps) per row, computed in float32 for float32 or bfloat16 x
// (`w` is float32 and already holds 1 + weight for Gemma's offset norm). One pass to reduce, one to write.
static inline float load_one(const void *p, int is_bf16, int64_t i) {
    return is_bf16 ? bf16_value(((const uint16_t *)p)[i]) : ((const float *)p)[i];
}

static inline void store_one(void *p, int is_bf16, int64_t i, float v) {
    if (is_bf16)
        ((uint16_t *)p)[i] = bf16_round(v);
    else
        ((float *)p)[i] = v;
}

void rmsnorm_forward(const void *x, const float *w, void *y, float *rstd, int is_bf16, int64_t rows, int64_t dim,
                     float eps, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const void *xr = (const char *)x + r * dim * (is_bf16 ? 2 : 4);
        void *yr = (char *)y + r * dim * (is_bf16 ? 2 : 4);
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int64_t j = 0; j < dim; j++) {
            float v = load_one(xr, is_bf16, j);
            sum += v * v;
        }
        float s = 1.0f / sqrtf(sum / (float)dim + eps);
        rstd[r] = s;
#pragma omp simd
        for (int64_t j = 0; j < dim; j++) store_one(yr, is_bf16, j, load_one(xr, is_bf16, j) * s * w[j]);
    }
}

// Gradients of the above for an upstream gradient gy: with g = gy * w and c = mean(g * x) per row,
//     gx = rstd * g - x * rstd^3 * c,        gw += gy * x * rstd (summed over rows)
// `gw_partial` is (threads, dim) float32, zeroed by the caller, one row per thread: the caller sums them.
void rmsnorm_backward(const void *gy, const void *x, const float *w, const float *rstd, void *gx, float *gw_partial,
                      int is_bf16, int64_t rows, int64_t dim, int threads) {
    int64_t elt = is_bf16 ? 2 : 4;
#pragma omp parallel num_threads(threads)
    {
        float *gw = gw_partial == NULL ? NULL : gw_partial + (int64_t)omp_get_thread_num() * dim;
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            const void *gyr = (const char *)gy + r * dim * elt, *xr = (const char *)x + r * dim * elt;
            void *gxr = (char *)gx + r * dim * elt;
            float s = rstd[r], dot = 0.0f;
#pragma omp simd reduction(+ : dot)
            for (int64_t j = 0; j < dim; j++) dot += load_one(gyr, is_bf16, j) * w[j] * load_one(xr, is_bf16, j);
            float c = dot / (float)dim * s * s * s;
#pragma omp simd
            for (int64_t j = 0; j < dim; j++) {
                float xv = load_one(xr, is_bf16, j), gv = load_one(gyr, is_bf16, j);
                store_one(gxr, is_bf16, j, s * gv * w[j] - xv * c);
            }
            if (gw != NULL) {
#pragma omp simd
                for (int64_t j = 0; j < dim; j++) gw[j] += load_one(gyr, is_bf16, j) * load_one(xr, is_bf16, j) * s;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------- attention probabilities
// Score rows s (float32 or bfloat16, `cols` wide, contiguous) of causal attention: row r holds the scores of query
// position q = r % T (a block's rows are the query heads of one K/V group, each over T positions), and only the
// columns [lo[q], hi[q]) are visible to it (causal: [0, q + 1); a sliding window starts later).
static inline __m256 load8(const void *p, int is_bf16, int64_t i) {
    return is_bf16 ? load_bf16((const uint16_t *)p + i) : _mm256_loadu_ps((const float *)p + i);
}

static inline void store8(void *p, int is_bf16, int64_t i, __m256 v) {
    if (is_bf16)
        store_bf16((uint16_t *)p + i, v);
    else
        _mm256_storeu_ps((float *)p + i, v);
}

// Zero a row's columns outside [a, b).
static inline void zero_outside(char *row, int64_t elt, int64_t a, int64_t b, int64_t cols) {
    memset(row, 0, a * elt);
    memset(row + b * elt, 0, (cols - b) * elt);
}

// Forward, in place: p = softmax(scale * s) over the visible columns, exactly 0 elsewhere (no -inf bias to add).
void attn_softmax(void *s, int is_bf16, int64_t rows, int64_t cols, int64_t T, const int32_t *lo, const int32_t *hi,
                  float scale, int threads) {
    int64_t elt = is_bf16 ? 2 : 4;
#pragma omp parallel num_threads(threads)
    {
        float *e = (float *)aligned_alloc(64, ((cols * sizeof(float) + 63) / 64) * 64);
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            int64_t q = r % T, a = lo[q], b = hi[q], j;
            char *row = (char *)s + r * cols * elt;
            __m256 vscale = _mm256_set1_ps(scale), vmax = _mm256_set1_ps(-INFINITY);
            for (j = a; j + 8 <= b; j += 8) vmax = _mm256_max_ps(vmax, load8(row, is_bf16, j));
            float max = hmax(vmax);
            for (; j < b; j++) max = fmaxf(max, load_one(row, is_bf16, j));
            max *= scale;  // scale > 0
            __m256 vm = _mm256_set1_ps(max), vsum = _mm256_setzero_ps();
            for (j = a; j + 8 <= b; j += 8) {
                __m256 ex = exp_nonpositive(_mm256_fmsub_ps(load8(row, is_bf16, j), vscale, vm));
                _mm256_storeu_ps(e + j, ex);
                vsum = _mm256_add_ps(vsum, ex);
            }
            float sum = hsum(vsum);
            for (; j < b; j++) {
                e[j] = expf(load_one(row, is_bf16, j) * scale - max);
                sum += e[j];
            }
            float inv = 1.0f / sum;
            __m256 vinv = _mm256_set1_ps(inv);
            for (j = a; j + 8 <= b; j += 8) store8(row, is_bf16, j, _mm256_mul_ps(_mm256_loadu_ps(e + j), vinv));
            for (; j < b; j++) store_one(row, is_bf16, j, e[j] * inv);
            zero_outside(row, elt, a, b, cols);
        }
        free(e);
    }
}

// Backward of the above for dp, the gradient of p, in place: ds = scale * p * (dp - sum_j p_j dp_j), 0 on the
// columns the row does not see.
void attn_softmax_backward(const void *p, void *dp, int is_bf16, int64_t rows, int64_t cols, int64_t T,
                           const int32_t *lo, const int32_t *hi, float scale, int threads) {
    int64_t elt = is_bf16 ? 2 : 4;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        int64_t q = r % T, a = lo[q], b = hi[q], j;
        const char *prow = (const char *)p + r * cols * elt;
        char *grow = (char *)dp + r * cols * elt;
        __m256 vdot = _mm256_setzero_ps();
        for (j = a; j + 8 <= b; j += 8) vdot = _mm256_fmadd_ps(load8(prow, is_bf16, j), load8(grow, is_bf16, j), vdot);
        float dot = hsum(vdot);
        for (; j < b; j++) dot += load_one(prow, is_bf16, j) * load_one(grow, is_bf16, j);
        __m256 vd = _mm256_set1_ps(dot), vscale = _mm256_set1_ps(scale);
        for (j = a; j + 8 <= b; j += 8) {
            __m256 pv = load8(prow, is_bf16, j), gv = load8(grow, is_bf16, j);
            store8(grow, is_bf16, j, _mm256_mul_ps(_mm256_mul_ps(pv, _mm256_sub_ps(gv, vd)), vscale));
        }
        for (; j < b; j++) store_one(grow, is_bf16, j, scale * load_one(prow, is_bf16, j) * (load_one(grow, is_bf16, j) - dot));
        zero_outside(grow, elt, a, b, cols);
    }
}

// --------------------------------------------------------------------------------------- query/key/value heads
// The fused qkv projection's output (B, T, (nh + 2 ng) * hs; rows `row_stride` elements apart) to contiguous
// heads q (B, nh, T, hs), k and v (B, ng, T, hs), with rotary embeddings (rotate-half convention) on the first
// n_elem features of q and k: out[j] = x[j] c[j] - x[j + h] s[j], out[j + h] = x[j + h] c[j + h] + x[j] s[j + h]
// for j < h = n_elem / 2, with c, s the float32 (T, n_elem) tables of position t; features past n_elem and v are
// copied. Computed in float32 and rounded once, as PyTorch's expression does.
static inline void rope_row(const void *x, void *o, const float *c, const float *s, int64_t hs, int64_t n_elem,
                            int is_bf16) {
    int64_t h = n_elem / 2;
#pragma omp simd
    for (int64_t j = 0; j < h; j++) {
        float a = load_one(x, is_bf16, j), b = load_one(x, is_bf16, j + h);
        store_one(o, is_bf16, j, a * c[j] - b * s[j]);
        store_one(o, is_bf16, j + h, b * c[j + h] + a * s[j + h]);
    }
    for (int64_t j = n_elem; j < hs; j++) store_one(o, is_bf16, j, load_one(x, is_bf16, j));
}

// The transpose of the above (the rotation by -angle): gx[j] = g[j] c[j] + g[j + h] s[j + h],
// gx[j + h] = g[j + h] c[j + h] - g[j] s[j].
static inline void rope_row_backward(const void *g, void *gx, const float *c, const float *s, int64_t hs,
                                     int64_t n_elem, int is_bf16) {
    int64_t h = n_elem / 2;
#pragma omp simd
    for (int64_t j = 0; j < h; j++) {
        float a = load_one(g, is_bf16, j), b = load_one(g, is_bf16, j + h);
        store_one(gx, is_bf16, j, a * c[j] + b * s[j + h]);
        store_one(gx, is_bf16, j + h, b * c[j + h] - a * s[j]);
    }
    for (int64_t j = n_elem; j < hs; j++) store_one(gx, is_bf16, j, load_one(g, is_bf16, j));
}

// Where head `head` (of the nh query, then ng key, then ng value heads) of token t in sequence b goes: its row of
// q (B, nh, T, hs), k or v (B, ng, T, hs), rows `bytes` long.
static inline char *head_row(void *q, void *k, void *v, int64_t b, int64_t t, int64_t head, int64_t T, int64_t nh,
                             int64_t ng, int64_t bytes) {
    if (head < nh) return (char *)q + ((b * nh + head) * T + t) * bytes;
    if (head < nh + ng) return (char *)k + ((b * ng + head - nh) * T + t) * bytes;
    return (char *)v + ((b * ng + head - nh - ng) * T + t) * bytes;
}

static inline void heads_pass(void *qkv, int64_t row_stride, void *q, void *k, void *v, const float *cos,
                              const float *sin, int is_bf16, int backward, int64_t B, int64_t T, int64_t nh,
                              int64_t ng, int64_t hs, int64_t n_elem, int threads) {
    int64_t elt = is_bf16 ? 2 : 4, heads = nh + 2 * ng;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t bt = 0; bt < B * T; bt++) {
        int64_t b = bt / T, t = bt % T;
        char *row = (char *)qkv + bt * row_stride * elt;
        const float *c = cos + t * n_elem, *s = sin + t * n_elem;
        for (int64_t head = 0; head < heads; head++) {
            char *x = row + head * hs * elt, *o = head_row(q, k, v, b, t, head, T, nh, ng, hs * elt);
            int64_t rotated = head < nh + ng ? n_elem : 0;
            // constant is_bf16 arguments specialise the inlined loops (5x faster than one call with a variable)
            if (backward) {
                if (is_bf16)
                    rope_row_backward(o, x, c, s, hs, rotated, 1);
                else
                    rope_row_backward(o, x, c, s, hs, rotated, 0);
            } else {
                if (is_bf16)
                    rope_row(x, o, c, s, hs, rotated, 1);
                else
                    rope_row(x, o, c, s, hs, rotated, 0);
            }
        }
    }
}

void qkv_heads_forward(const void *qkv, int64_t row_stride, void *q, void *k, void *v, const float *cos,
                       const float *sin, int is_bf16, int64_t B, int64_t T, int64_t nh, int64_t ng, int64_t hs,
                       int64_t n_elem, int threads) {
    heads_pass((void *)qkv, row_stride, q, k, v, cos, sin, is_bf16, 0, B, T, nh, ng, hs, n_elem, threads);
}

// The same pass for models that normalise each query and key head (Gemma 3, Qwen3; inference only): every q and k
// head is RMS-normalised over its hs features with the float32 scale wq / wk (hs values; Gemma's 1 + w already
// added), rounded to the heads' dtype as PyTorch's norm rounds its output, then rotated. hs <= MAX_HEAD.
#define MAX_HEAD 1024
void qkv_heads_norm_forward(const void *qkv, int64_t row_stride, void *q, void *k, void *v, const float *cos,
                            const float *sin, int is_bf16, int64_t B, int64_t T, int64_t nh, int64_t ng, int64_t hs,
                            int64_t n_elem, const float *wq, const float *wk, float eps, int threads) {
    int64_t elt = is_bf16 ? 2 : 4, heads = nh + 2 * ng;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t bt = 0; bt < B * T; bt++) {
        int64_t b = bt / T, t = bt % T;
        const char *row = (const char *)qkv + bt * row_stride * elt;
        const float *c = cos + t * n_elem, *s = sin + t * n_elem;
        float normed[MAX_HEAD]; /* float32, or bfloat16 bits in its first half */
        for (int64_t head = 0; head < heads; head++) {
            const char *x = row + head * hs * elt;
            char *o = head_row(q, k, v, b, t, head, T, nh, ng, hs * elt);
            if (head >= nh + ng) {
                memcpy(o, x, (size_t)(hs * elt));
                continue;
            }
            const float *w = head < nh ? wq : wk;
            float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
            for (int64_t j = 0; j < hs; j++) {
                float a = load_one(x, is_bf16, j);
                sum += a * a;
            }
            const float r = 1.0f / sqrtf(sum / (float)hs + eps);
            if (is_bf16) {
#pragma omp simd
                for (int64_t j = 0; j < hs; j++) store_one(normed, 1, j, load_one(x, 1, j) * r * w[j]);
                rope_row(normed, o, c, s, hs, n_elem, 1);
            } else {
#pragma omp simd
                for (int64_t j = 0; j < hs; j++) normed[j] = load_one(x, 0, j) * r * w[j];
                rope_row(normed, o, c, s, hs, n_elem, 0);
            }
        }
    }
}

// gq, gk, gv (contiguous, shaped as q, k, v) to the gradient of the qkv output (B, T, (nh + 2 ng) * hs), contiguous.
void qkv_heads_backward(const void *gq, const void *gk, const void *gv, void *gqkv, const float *cos,
                        const float *sin, int is_bf16, int64_t B, int64_t T, int64_t nh, int64_t ng, int64_t hs,
                        int64_t n_elem, int threads) {
    heads_pass(gqkv, (nh + 2 * ng) * hs, (void *)gq, (void *)gk, (void *)gv, cos, sin, is_bf16, 1, B, T, nh, ng,
               hs, n_elem, threads);
}

// ---------------------------------------------------------------------------------------------- gated MLP units
// The gated unit of LLaMA/Gemma MLPs, h = act(a) * b over n elements (a = fc_1(x), b = fc_2(x)), float32 or
// bfloat16, with act SiLU (kind 0) or GELU's tanh form (kind 1). Forward in one pass; the backward recomputes act
// and its derivative from a in one pass:
//     ga = g * b * act'(a),        gb = g * act(a)
// where PyTorch's expression takes five element-wise passes (act, mul; mul, mul, act's backward), each through main
// memory and each rounding to bfloat16 in between; here everything is float32 between the loads and the stores.
// SiLU: act = a s, s = 1 / (1 + e^-a), act' = s (1 + a (1 - s)).
// GELU (tanh): u = c (a + 0.044715 a^3), c = sqrt(2 / pi), act = a (1 + t) / 2 with t = tanh u,
//     act' = (1 + t) / 2 + a (1 - t^2) c (1 + 3 * 0.044715 a^2) / 2.
static inline __m256 sigmoid8(__m256 a) {  // 1 / (1 + e^-a) from e^-|a| <= 1, exact to float32 rounding
    const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
    __m256 e = exp_nonpositive(_mm256_or_ps(a, sign));  // e^-|a|
    __m256 r = _mm256_div_ps(one, _mm256_add_ps(one, e));
    return _mm256_blendv_ps(r, _mm256_mul_ps(e, r), a);  // a < 0: e^a / (1 + e^a)
}

// 1 + tanh u = 2 / (1 + e) for u >= 0 and 2e / (1 + e) below, with e = e^-2|u| (no cancellation where tanh u is
// near -1); and 1 - tanh^2 u = 4e / (1 + e)^2
static inline __m256 one_plus_tanh8(__m256 u, __m256 *sech2) {
    const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f), two = _mm256_set1_ps(2.0f);
    __m256 e = exp_nonpositive(_mm256_mul_ps(two, _mm256_or_ps(u, sign)));
    __m256 r = _mm256_div_ps(one, _mm256_add_ps(one, e));
    if (sech2) *sech2 = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(4.0f), e), _mm256_mul_ps(r, r));
    return _mm256_blendv_ps(_mm256_mul_ps(two, r), _mm256_mul_ps(_mm256_mul_ps(two, e), r), u);
}

#define GELU_C 0.7978845608028654f
#define GELU_K 0.044715f

// act(a) in *act and act'(a) in *grad (when grad is not NULL)
static inline void glu_act8(__m256 a, int kind, __m256 *act, __m256 *grad) {
    const __m256 one = _mm256_set1_ps(1.0f), half = _mm256_set1_ps(0.5f);
    if (kind == 0) {
        __m256 s = sigmoid8(a);
        *act = _mm256_mul_ps(a, s);
        if (grad) *grad = _mm256_mul_ps(s, _mm256_fmadd_ps(a, _mm256_sub_ps(one, s), one));
    } else {
        __m256 a2 = _mm256_mul_ps(a, a);
        __m256 cubic = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(GELU_K), a2), a, a);
        __m256 u = _mm256_mul_ps(_mm256_set1_ps(GELU_C), cubic);
        __m256 sech2, opt = one_plus_tanh8(u, &sech2);
        *act = _mm256_mul_ps(_mm256_mul_ps(half, a), opt);
        if (grad) {
            __m256 du = _mm256_mul_ps(_mm256_set1_ps(GELU_C), _mm256_fmadd_ps(_mm256_set1_ps(3.0f * GELU_K), a2, one));
            *grad = _mm256_mul_ps(half, _mm256_fmadd_ps(_mm256_mul_ps(a, sech2), du, opt));
        }
    }
}

static inline float glu_act1(float a, int kind, float *grad) {
    if (kind == 0) {
        float s = 1.0f / (1.0f + expf(-a));
        if (grad) *grad = s * (1.0f + a * (1.0f - s));
        return a * s;
    }
    float u = GELU_C * (a + GELU_K * a * a * a), e = expf(-2.0f * fabsf(u)), r = 1.0f / (1.0f + e);
    float opt = u >= 0 ? 2.0f * r : 2.0f * e * r; /* as one_plus_tanh8 */
    if (grad) *grad = 0.5f * opt + 0.5f * a * (4.0f * e * r * r) * GELU_C * (1.0f + 3.0f * GELU_K * a * a);
    return 0.5f * a * opt;
}

#define GLU_BLOCK 4096 /* elements per OpenMP work item (a multiple of 16) */

/* The same on 16 lanes where the CPU has AVX-512 (twice the arithmetic per instruction: these passes are bound by
   the exponential and the division, not by memory). */
int has_avx512_vnni(void); /* gemv.c: AVX512-F/BW/VNNI, and allowed */
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))

AVX512 static inline __m512 exp_nonpositive16(__m512 x) { /* exp_nonpositive on 16 lanes */
    x = _mm512_max_ps(x, _mm512_set1_ps(EXP_MIN));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(LOG2E)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x));
    __m512 p = _mm512_set1_ps(EXP_TAYLOR[0]);
    for (int c = 1; c < 8; c++) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_TAYLOR[c]));
    __m512i scale = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(scale));
}

AVX512 static inline __m512 load16(const void *p, int is_bf16, int64_t i) {
    if (!is_bf16) return _mm512_loadu_ps((const float *)p + i);
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)p + i));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

AVX512 static inline void store16(void *p, int is_bf16, int64_t i, __m512 v) { /* bf16: round to nearest even */
    if (!is_bf16) {
        _mm512_storeu_ps((float *)p + i, v);
        return;
    }
    __m512i bits = _mm512_castps_si512(v);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
    bits = _mm512_srli_epi32(_mm512_add_epi32(bits, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
    _mm256_storeu_si256((__m256i *)((uint16_t *)p + i), _mm512_cvtepi32_epi16(bits));
}

AVX512 static inline void glu_act16(__m512 a, int kind, __m512 *act, __m512 *grad) { /* glu_act8 on 16 lanes */
    const __m512 one = _mm512_set1_ps(1.0f), half = _mm512_set1_ps(0.5f), two = _mm512_set1_ps(2.0f);
    /* sign bits (-0.0 included) */
    const __mmask16 neg = _mm512_cmplt_epi32_mask(_mm512_castps_si512(a), _mm512_setzero_si512());
    if (kind == 0) {
        __m512 e = exp_nonpositive16(_mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(a),
                                                                            _mm512_set1_epi32((int)0x80000000))));
        __m512 r = _mm512_div_ps(one, _mm512_add_ps(one, e));
        __m512 s = _mm512_mask_mul_ps(r, neg, e, r);
        *act = _mm512_mul_ps(a, s);
        if (grad) *grad = _mm512_mul_ps(s, _mm512_fmadd_ps(a, _mm512_sub_ps(one, s), one));
        return;
    }
    __m512 a2 = _mm512_mul_ps(a, a);
    __m512 u = _mm512_mul_ps(_mm512_set1_ps(GELU_C), _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(GELU_K), a2), a, a));
    const __mmask16 uneg = _mm512_cmplt_epi32_mask(_mm512_castps_si512(u), _mm512_setzero_si512());
    __m512 e = exp_nonpositive16(_mm512_mul_ps(two, _mm512_castsi512_ps(_mm512_or_si512(
                                     _mm512_castps_si512(u), _mm512_set1_epi32((int)0x80000000)))));
    __m512 r = _mm512_div_ps(one, _mm512_add_ps(one, e));
    __m512 opt = _mm512_mask_mul_ps(_mm512_mul_ps(two, r), uneg, _mm512_mul_ps(two, e), r);
    *act = _mm512_mul_ps(_mm512_mul_ps(half, a), opt);
    if (grad) {
        __m512 sech2 = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(4.0f), e), _mm512_mul_ps(r, r));
        __m512 du = _mm512_mul_ps(_mm512_set1_ps(GELU_C), _mm512_fmadd_ps(_mm512_set1_ps(3.0f * GELU_K), a2, one));
        *grad = _mm512_mul_ps(half, _mm512_fmadd_ps(_mm512_mul_ps(a, sech2), du, opt));
    }
}

/* elements [i, end) of one block in 16-lane steps; returns where the 8-lane code takes over */
AVX512 static int64_t glu_forward16(const void *a, const void *b, void *h, int is_bf16, int64_t i, int64_t end,
                                    int kind) {
    for (; i + 16 <= end; i += 16) {
        __m512 act;
        glu_act16(load16(a, is_bf16, i), kind, &act, NULL);
        store16(h, is_bf16, i, _mm512_mul_ps(act, load16(b, is_bf16, i)));
    }
    return i;
}

AVX512 static int64_t glu_backward16(const void *g, const void *a, const void *b, void *ga, void *gb, int is_bf16,
                                     int64_t i, int64_t end, int kind) {
    for (; i + 16 <= end; i += 16) {
        __m512 act, grad, gv = load16(g, is_bf16, i);
        glu_act16(load16(a, is_bf16, i), kind, &act, &grad);
        store16(ga, is_bf16, i, _mm512_mul_ps(_mm512_mul_ps(gv, load16(b, is_bf16, i)), grad));
        store16(gb, is_bf16, i, _mm512_mul_ps(gv, act));
    }
    return i;
}

void glu_forward(const void *a, const void *b, void *h, int is_bf16, int64_t n, int kind, int threads) {
    const int64_t blocks = (n + GLU_BLOCK - 1) / GLU_BLOCK;
    const int wide = has_avx512_vnni();
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t blk = 0; blk < blocks; blk++) {
        const int64_t start = blk * GLU_BLOCK, end = start + GLU_BLOCK < n ? start + GLU_BLOCK : n;
        int64_t i = wide ? glu_forward16(a, b, h, is_bf16, start, end, kind) : start;
        for (; i + 8 <= end; i += 8) {
            __m256 act;
            glu_act8(load8(a, is_bf16, i), kind, &act, NULL);
            store8(h, is_bf16, i, _mm256_mul_ps(act, load8(b, is_bf16, i)));
        }
        for (; i < end; i++)
            store_one(h, is_bf16, i, glu_act1(load_one(a, is_bf16, i), kind, NULL) * load_one(b, is_bf16, i));
    }
}

void glu_backward(const void *g, const void *a, const void *b, void *ga, void *gb, int is_bf16, int64_t n, int kind,
                  int threads) {
    const int64_t blocks = (n + GLU_BLOCK - 1) / GLU_BLOCK;
    const int wide = has_avx512_vnni();
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t blk = 0; blk < blocks; blk++) {
        const int64_t start = blk * GLU_BLOCK, end = start + GLU_BLOCK < n ? start + GLU_BLOCK : n;
        int64_t i = wide ? glu_backward16(g, a, b, ga, gb, is_bf16, start, end, kind) : start;
        for (; i + 8 <= end; i += 8) {
            __m256 act, grad, gv = load8(g, is_bf16, i);
            glu_act8(load8(a, is_bf16, i), kind, &act, &grad);
            store8(ga, is_bf16, i, _mm256_mul_ps(_mm256_mul_ps(gv, load8(b, is_bf16, i)), grad));
            store8(gb, is_bf16, i, _mm256_mul_ps(gv, act));
        }
        for (; i < end; i++) {
            float grad, gv = load_one(g, is_bf16, i);
            float act = glu_act1(load_one(a, is_bf16, i), kind, &grad);
            store_one(ga, is_bf16, i, gv * load_one(b, is_bf16, i) * grad);
            store_one(gb, is_bf16, i, gv * act);
        }
    }
}
