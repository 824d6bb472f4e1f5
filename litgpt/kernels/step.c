/* One whole decode step in C, for one sequence or a batch of up to MAX_B: embedding rows -> every block -> final
   norm -> logits.

   Eager PyTorch spends about 20 small operator calls per block on a decode step (norms, rotary embedding, cache
   writes, attention, residuals), tens of microseconds each on a small CPU: for a 30-layer model that is more time
   than reading the weights. This file runs the same arithmetic as litgpt/model.py for the architectures it
   describes (RMSNorm, sequential residual, optional post norms, q/k norms, rotate-half RoPE, grouped-query attention
   with sliding windows and soft-capping, gated MLP), with the matrix products done by gemv.c's kernels. Python
   (litgpt/kernels/fused.py) fills the structs below once per generation with pointers into the model's own
   parameters and KV cache, so this step and PyTorch's forward read and write the same memory and can alternate
   (PyTorch prefills, C decodes). Everything is float32 except the weights (see gemv.c for their kinds) and the KV
   cache, float32 or bfloat16 (a bfloat16 model's: half the bytes to read at every step of a long context). A batch
   multiplies all its rows with each weight matrix as it is read (gemv.c's M rows), so B sequences cost little more
   than one while the step is bound by memory reads. */

#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "simd.h"

void gemv_f32(const float *x, const float *w, float *y, int64_t M, int64_t N, int64_t K, int threads);
void gemv_bf16(const float *x, const uint16_t *w, float *y, int64_t M, int64_t N, int64_t K, int threads);
int gemv_i8(const float *x, const int8_t *w, const float *scales, float *y, int64_t M, int64_t N, int64_t K,
            int threads);
int gemv_i4(const float *x, const uint8_t *w, const uint16_t *scales, const uint16_t *zeros, float *y, int64_t M,
            int64_t N, int64_t K, int threads);
int64_t head_top(const float *x, int64_t M, int64_t N, int64_t K, int64_t w_kind, const void *w, const float *bias,
                 const int8_t *q, const float *s, int64_t top, double softcap, float *logits, int threads);

enum { KIND_F32 = 0, KIND_BF16 = 1, KIND_I8 = 2, KIND_I4 = 3 };
enum { ACT_SILU = 0, ACT_GELU_TANH = 1, ACT_GELU = 2 };

typedef struct {
    int64_t kind, N, K;
    const void *w;
    const void *scales, *zeros; /* quantized kinds only: float32 row scales (int8), float16 block scales/zeros (int4) */
    const float *bias;          /* NULL when absent */
} Mat;

typedef struct {
    /* norm weights as applied (Gemma's 1 + w already added), float32; NULL when the model has no such norm */
    const float *norm_1, *post_attention_norm, *norm_2, *post_mlp_norm, *norm_q, *norm_k;
    Mat qkv, proj, fc_1, fc_2, mlp_proj;
    void *k_cache, *v_cache;  /* (B, n_groups, S, head_size): the model's KV cache, float32 or bfloat16 (kv_bf16) */
    const float *cos, *sin;   /* (S, rope_n_elem): this layer's rotary table */
    int64_t window;           /* sliding window length; 0 = every earlier position */
} Layer;

typedef struct {
    int64_t n_layer, n_embd, n_head, n_groups, head_size, rope_n_elem, intermediate, S, activation, qk_norm_full,
        threads, wte_kind, kv_bf16;
    double eps, embedding_scale, attn_scale, attn_softcap, final_softcap; /* softcaps: 0 = none */
    const Layer *layers;
    const void *wte; /* (vocab, n_embd) float32 or bfloat16 */
    const float *ln_f;
    Mat head;
    const int8_t *screen_q; /* the head's int8 copy for head_top (head.c), or NULL */
    const float *screen_s;
} Model;

#define MAX_B 8 /* sequences per step: gemv.c's rows of x per call */

/* y (B, N) = x (B, K) @ W.T (+ bias) */
static int matvec(const Mat *m, const float *x, float *y, int64_t B, int threads) {
    int ok = 1;
    switch (m->kind) {
    case KIND_F32: gemv_f32(x, (const float *)m->w, y, B, m->N, m->K, threads); break;
    case KIND_BF16: gemv_bf16(x, (const uint16_t *)m->w, y, B, m->N, m->K, threads); break;
    case KIND_I8: ok = gemv_i8(x, (const int8_t *)m->w, (const float *)m->scales, y, B, m->N, m->K, threads); break;
    case KIND_I4:
        ok = gemv_i4(x, (const uint8_t *)m->w, (const uint16_t *)m->scales, (const uint16_t *)m->zeros, y, B, m->N,
                     m->K, threads);
        break;
    default: return 0;
    }
    if (m->bias)
        for (int64_t b = 0; b < B; b++)
            for (int64_t n = 0; n < m->N; n++) y[b * m->N + n] += m->bias[n];
    return ok;
}

static void rmsnorm(const float *x, const float *w, float *out, int64_t n, double eps) {
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float r = (float)(1.0 / sqrt(ss / (double)n + eps));
    for (int64_t i = 0; i < n; i++) out[i] = x[i] * r * w[i];
}

/* rotate-half RoPE on the first n features of one head, at one position */
static void rope(float *v, const float *cos, const float *sin, int64_t n) {
    const int64_t half = n / 2;
    for (int64_t i = 0; i < half; i++) {
        float a = v[i], b = v[i + half];
        v[i] = a * cos[i] - b * sin[i];
        v[i + half] = b * cos[i + half] + a * sin[i + half];
    }
}

/* e^x for 8 floats: x = n ln2 + r, e^r by a degree-7 polynomial (the Cephes expf coefficients), times 2^n; within
   two ulp of expf. Saturates to 0 / FLT_MAX-ish beyond +-88. */
static inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-88.0f)), _mm256_set1_ps(88.0f));
    __m256 n = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

/* h1 = act(h1) * h2 over n values, 8 at a time for SiLU and tanh-GELU (tanh u = 1 - 2 / (e^2u + 1)); the exact GELU
   and the tail take the scalar code below */
static int64_t gate8(float *h1, const float *h2, int64_t n, int64_t kind) {
    int64_t i = 0;
    if (kind == ACT_GELU) return 0;
    const __m256 one = _mm256_set1_ps(1.0f), two = _mm256_set1_ps(2.0f), half = _mm256_set1_ps(0.5f);
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(h1 + i), a;
        if (kind == ACT_SILU) {
            a = _mm256_div_ps(v, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), v))));
        } else {
            __m256 u = _mm256_mul_ps(_mm256_set1_ps(0.7978845608f),
                                     _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(0.044715f), v), _mm256_mul_ps(v, v), v));
            __m256 t = _mm256_sub_ps(one, _mm256_div_ps(two, _mm256_add_ps(exp8(_mm256_mul_ps(two, u)), one)));
            a = _mm256_mul_ps(_mm256_mul_ps(half, v), _mm256_add_ps(one, t));
        }
        _mm256_storeu_ps(h1 + i, _mm256_mul_ps(a, _mm256_loadu_ps(h2 + i)));
    }
    return i;
}

static float activation(float v, int64_t kind) {
    if (kind == ACT_SILU) return v / (1.0f + expf(-v));
    if (kind == ACT_GELU_TANH) return 0.5f * v * (1.0f + tanhf(0.7978845608f * (v + 0.044715f * v * v * v)));
    return 0.5f * v * (1.0f + erff(v * 0.70710678f));
}

/* a . b over n floats: two 8-wide FMA chains (the compiler keeps a float sum in order, so it would not vectorize) */
static inline float dot(const float *a, const float *b, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    float total = hsum(_mm256_add_ps(s0, s1));
    for (; i < n; i++) total += a[i] * b[i];
    return total;
}

/* o[0:n] += a * v[0:n] */
static inline void axpy(float *o, float a, const float *v, int64_t n) {
    const __m256 av = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(o + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(v + i), _mm256_loadu_ps(o + i)));
    for (; i < n; i++) o[i] += a * v[i];
}

#define CACHE_AHEAD 3072 /* bytes of the cache asked for ahead of the ones read (as gemv.c's AHEAD) */

/* dst[0:n] = the float32 values of the bfloat16 src[0:n], the first read of a block of the cache */
static void bf16_to_f32(const uint16_t *src, int64_t n, float *dst) {
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        _mm_prefetch((const char *)(src + i) + CACHE_AHEAD, _MM_HINT_T0);
        for (int k = 0; k < 32; k += 8) _mm256_storeu_ps(dst + i + k, load8_bf16(src + i + k));
    }
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load8_bf16(src + i));
    for (; i < n; i++) dst[i] = bf16_value(src[i]);
}

/* rows jb .. je - 1 of a cache block (hs floats each): in place for a float32 cache (f32), else converted from the
   bfloat16 one (bf16) into `rows`, once for all the heads of a query group */
static inline const float *cache_rows(const float *f32, const uint16_t *bf16, int64_t jb, int64_t je, int64_t hs,
                                      float *rows) {
    if (!bf16) return f32 + jb * hs;
    bf16_to_f32(bf16 + jb * hs, (je - jb) * hs, rows);
    return rows;
}

/* the sums of eight 8-lane vectors, in order, as one vector */
static inline __m256 sums8(const __m256 *a) {
    const __m256 t0 = _mm256_hadd_ps(a[0], a[1]), t1 = _mm256_hadd_ps(a[2], a[3]);
    const __m256 t2 = _mm256_hadd_ps(a[4], a[5]), t3 = _mm256_hadd_ps(a[6], a[7]);
    const __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

/* q . K[r] for the 8 rows r of K (hs apart; hs a multiple of 8) as one vector, without the horizontal sum per row
   that makes one dot product per position slow */
static inline __m256 dot8(const float *q, const float *K, int64_t hs) {
    __m256 a[8];
    for (int r = 0; r < 8; r++) a[r] = _mm256_setzero_ps();
    for (int64_t d = 0; d < hs; d += 8) {
        const __m256 qv = _mm256_loadu_ps(q + d);
        for (int r = 0; r < 8; r++) a[r] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(K + r * hs + d), a[r]);
    }
    return sums8(a);
}

/* o[0:hs] += sum of p[j] V[j] (rows hs apart) over the positions j < n that are valid (ok[j], or all when ok is
   NULL), 32 outputs at a time kept in registers over all the positions */
static void weighted_sum(float *o, const float *p, const float *V, int64_t n, int64_t hs, const uint8_t *ok) {
    int64_t d = 0;
    for (; d + 32 <= hs; d += 32) {
        __m256 o0 = _mm256_loadu_ps(o + d), o1 = _mm256_loadu_ps(o + d + 8);
        __m256 o2 = _mm256_loadu_ps(o + d + 16), o3 = _mm256_loadu_ps(o + d + 24);
        for (int64_t j = 0; j < n; j++) {
            if (ok && !ok[j]) continue; /* a padded position may hold anything */
            const __m256 w = _mm256_set1_ps(p[j]);
            const float *v = V + j * hs + d;
            o0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(v), o0);
            o1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + 8), o1);
            o2 = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + 16), o2);
            o3 = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + 24), o3);
        }
        _mm256_storeu_ps(o + d, o0);
        _mm256_storeu_ps(o + d + 8, o1);
        _mm256_storeu_ps(o + d + 16, o2);
        _mm256_storeu_ps(o + d + 24, o3);
    }
    for (; d < hs; d++)
        for (int64_t j = 0; j < n; j++)
            if (!ok || ok[j]) o[d] += p[j] * V[j * hs + d];
}

#define ATTEND_MIN 32   /* fewest positions in a chunk of the cache that one thread reads */
#define ATTEND_BLOCK 32 /* positions read for all of a query group's heads at once */

/* Attention of one decode step. q: (B, n_head, hs) at position pos (its row of qkv: stride qkv_row); keys and
   values are read from each sequence's cache up to pos, skipping positions where valid[b, j] is 0 (left padding;
   NULL: all valid); out: (B, n_head, hs); scores: (B, n_head, S) scratch.

   A long context makes this step read as much as the weights (SmolLM2-135M at 4,000 positions: 184 MB of keys and
   values against 135 MB of int8 weights), so the positions are split into chunks, read once per query group by
   one thread each with all the group's heads, as flash-decoding does: every chunk keeps its own maximum score m,
   sum of e^(s - m) and e^(s - m)-weighted sum of values, and the chunks are then combined exactly. */
static int attend(const Model *md, const Layer *L, const float *q, int64_t qkv_row, int64_t B, int64_t pos,
                  const uint8_t *valid, float *scores, float *out) {
    const int64_t hs = md->head_size, S = md->S, nh = md->n_head, ng = md->n_groups, per_group = nh / ng;
    const int64_t lo = L->window > 0 && pos - L->window + 1 > 0 ? pos - L->window + 1 : 0, len = pos - lo + 1;
    const int64_t groups = B * ng, wanted = (2 * md->threads + groups - 1) / groups; /* tasks for every thread */
    const int64_t most = (len + ATTEND_MIN - 1) / ATTEND_MIN, chunks = wanted < most ? wanted : most;
    float *part = (float *)malloc(sizeof(float) * (size_t)(chunks * B * nh * (hs + 2))); /* per chunk and head */
    if (!part) return 0;
    float *part_m = part + chunks * B * nh * hs, *part_l = part_m + chunks * B * nh;
    const __m256 minus_inf = _mm256_set1_ps(-INFINITY);
    int failed = 0; /* a task without memory for its converted rows */
#pragma omp parallel for num_threads((int)md->threads) schedule(static)
    for (int64_t task = 0; task < chunks * groups; task++) {
        const int64_t c = task / groups, b = task % groups / ng, g = task % ng;
        const int64_t j0 = lo + len * c / chunks, j1 = lo + len * (c + 1) / chunks; /* positions j0 .. j1 - 1 */
        const int64_t at = (b * ng + g) * S * hs, bf16 = md->kv_bf16;
        const float *K = (const float *)L->k_cache + at, *V = (const float *)L->v_cache + at;
        const uint16_t *Kh = bf16 ? (const uint16_t *)L->k_cache + at : NULL;
        const uint16_t *Vh = bf16 ? (const uint16_t *)L->v_cache + at : NULL;
        float *rows = bf16 ? (float *)malloc(sizeof(float) * (size_t)(ATTEND_BLOCK * hs)) : NULL;
        if (bf16 && !rows) {
            failed = 1;
            continue;
        }
        const uint8_t *ok = valid ? valid + b * S : NULL;
        const int64_t h0 = g * per_group, h1 = h0 + per_group, slot0 = (c * B + b) * nh;
        for (int64_t h = h0; h < h1; h++) {
            part_m[slot0 + h] = -INFINITY;
            part_l[slot0 + h] = 0.0f;
            for (int64_t d = 0; d < hs; d++) part[(slot0 + h) * hs + d] = 0.0f;
        }
        /* in blocks of positions whose keys (then values) stay in L1 for all the group's heads */
        for (int64_t jb = j0; jb < j1; jb += ATTEND_BLOCK) {
            const int64_t je = jb + ATTEND_BLOCK < j1 ? jb + ATTEND_BLOCK : j1;
            const float *Kb = cache_rows(K, Kh, jb, je, hs, rows); /* the block's keys */
            for (int64_t h = h0; h < h1; h++) {
                const float *qh = q + b * qkv_row + h * hs;
                float *sc = scores + (b * nh + h) * S, best = part_m[slot0 + h];
                int64_t j = jb;
                if (hs % 8 == 0)
                    for (; j + 8 <= je; j += 8) _mm256_storeu_ps(sc + j, dot8(qh, Kb + (j - jb) * hs, hs));
                for (; j < je; j++) sc[j] = dot(qh, Kb + (j - jb) * hs, hs);
                j = jb;
                if (!ok && md->attn_softcap <= 0) { /* scaled and their maximum taken 8 at a time */
                    const __m256 scale = _mm256_set1_ps((float)md->attn_scale);
                    __m256 most = _mm256_set1_ps(best);
                    for (; j + 8 <= je; j += 8) {
                        const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(sc + j), scale);
                        _mm256_storeu_ps(sc + j, v);
                        most = _mm256_max_ps(most, v);
                    }
                    best = hmax(most);
                }
                for (; j < je; j++) {
                    if (ok && !ok[j]) {
                        sc[j] = -INFINITY;
                        continue;
                    }
                    float score = sc[j] * (float)md->attn_scale;
                    if (md->attn_softcap > 0) score = tanhf(score / (float)md->attn_softcap) * (float)md->attn_softcap;
                    sc[j] = score;
                    best = score > best ? score : best;
                }
                part_m[slot0 + h] = best;
            }
        }
        for (int64_t h = h0; h < h1; h++) { /* e^(s - best), 0 where s is -inf (padding) */
            float *sc = scores + (b * nh + h) * S, best = part_m[slot0 + h], total = 0.0f;
            if (best == -INFINITY) continue; /* every position of the chunk is padding */
            int64_t j = j0;
            __m256 sum = _mm256_setzero_ps();
            for (; j + 8 <= j1; j += 8) {
                __m256 v = _mm256_loadu_ps(sc + j);
                __m256 e = _mm256_and_ps(exp8(_mm256_sub_ps(v, _mm256_set1_ps(best))), _mm256_cmp_ps(v, minus_inf, _CMP_NEQ_OQ));
                _mm256_storeu_ps(sc + j, e);
                sum = _mm256_add_ps(sum, e);
            }
            total = hsum(sum);
            for (; j < j1; j++) {
                sc[j] = sc[j] == -INFINITY ? 0.0f : expf(sc[j] - best);
                total += sc[j];
            }
            part_l[slot0 + h] = total;
        }
        for (int64_t jb = j0; jb < j1; jb += ATTEND_BLOCK) {
            const int64_t je = jb + ATTEND_BLOCK < j1 ? jb + ATTEND_BLOCK : j1;
            const float *Vb = cache_rows(V, Vh, jb, je, hs, rows); /* the block's values */
            for (int64_t h = h0; h < h1; h++) {
                const float *sc = scores + (b * nh + h) * S;
                weighted_sum(part + (slot0 + h) * hs, sc + jb, Vb, je - jb, hs, ok ? ok + jb : NULL);
            }
        }
        free(rows);
    }
    if (failed) {
        free(part);
        return 0;
    }
    for (int64_t bh = 0; bh < B * nh; bh++) { /* the chunks combined: weights e^(m_c - m) */
        float best = -INFINITY, total = 0.0f, *o = out + bh * hs;
        for (int64_t c = 0; c < chunks; c++) best = part_m[c * B * nh + bh] > best ? part_m[c * B * nh + bh] : best;
        for (int64_t d = 0; d < hs; d++) o[d] = 0.0f;
        if (best == -INFINITY) continue;
        for (int64_t c = 0; c < chunks; c++) {
            const int64_t slot = c * B * nh + bh;
            if (part_m[slot] == -INFINITY) continue;
            const float w = expf(part_m[slot] - best);
            total += w * part_l[slot];
            axpy(o, w, part + slot * hs, hs);
        }
        for (int64_t d = 0; d < hs; d++) o[d] /= total;
    }
    free(part);
    return 1;
}

/* Logits (B, vocab) for tokens[b] at position `pos` (< S) of each of B sequences (B <= MAX_B, the model's KV
   cache holding B rows); writes this position's keys and values into every layer's cache. valid (B, S) marks the
   positions each sequence attends to (0: left padding), or NULL. top > 0 with a head copy (screen_q): only the
   `top` largest logits of each row are needed, and the others may come out as -inf (head.c). Returns 1, or 0 when
   a kernel could not run (a shape the Python side should have refused) or on no memory. */
int decode_steps(const Model *md, int64_t B, const int64_t *tokens, int64_t pos, const uint8_t *valid, float *logits,
                 int64_t top) {
    const int64_t E = md->n_embd, hs = md->head_size, nh = md->n_head, ng = md->n_groups, I = md->intermediate;
    const int64_t qsize = nh * hs, kvsize = ng * hs, n = md->rope_n_elem, row = qsize + 2 * kvsize;
    const int threads = (int)md->threads;
    if (B < 1 || B > MAX_B || pos < 0 || pos >= md->S) return 0;
    const int64_t total = B * (3 * E + row + qsize + 2 * I + nh * md->S);
    float *buf = (float *)malloc(sizeof(float) * (size_t)total);
    if (!buf) return 0;
    float *x = buf, *xn = x + B * E, *tmp = xn + B * E, *qkv = tmp + B * E, *att = qkv + B * row;
    float *h1 = att + B * qsize, *h2 = h1 + B * I, *scores = h2 + B * I;
    int ok = 1;

    for (int64_t b = 0; b < B; b++) {
        float *xb = x + b * E;
        if (md->wte_kind == KIND_BF16) {
            const uint16_t *emb = (const uint16_t *)md->wte + tokens[b] * E;
            for (int64_t i = 0; i < E; i++) {
                uint32_t bits = (uint32_t)emb[i] << 16;
                memcpy(xb + i, &bits, sizeof(float));
            }
        } else {
            memcpy(xb, (const float *)md->wte + tokens[b] * E, sizeof(float) * (size_t)E);
        }
        if (md->embedding_scale != 1.0)
            for (int64_t i = 0; i < E; i++) xb[i] *= (float)md->embedding_scale;
    }

    for (int64_t l = 0; l < md->n_layer && ok; l++) {
        const Layer *L = md->layers + l;
        for (int64_t b = 0; b < B; b++) {
            if (L->norm_1) rmsnorm(x + b * E, L->norm_1, xn + b * E, E, md->eps);
            else memcpy(xn + b * E, x + b * E, sizeof(float) * (size_t)E);
        }
        ok &= matvec(&L->qkv, xn, qkv, B, threads);
        for (int64_t b = 0; b < B; b++) {
            float *q = qkv + b * row, *k = q + qsize, *v = k + kvsize;
            if (L->norm_q && md->qk_norm_full) {
                rmsnorm(q, L->norm_q, q, qsize, md->eps);
                rmsnorm(k, L->norm_k, k, kvsize, md->eps);
            } else if (L->norm_q) {
                for (int64_t h = 0; h < nh; h++) rmsnorm(q + h * hs, L->norm_q, q + h * hs, hs, md->eps);
                for (int64_t g = 0; g < ng; g++) rmsnorm(k + g * hs, L->norm_k, k + g * hs, hs, md->eps);
            }
            if (n > 0) {
                const float *c = L->cos + pos * n, *s = L->sin + pos * n;
                for (int64_t h = 0; h < nh; h++) rope(q + h * hs, c, s, n);
                for (int64_t g = 0; g < ng; g++) rope(k + g * hs, c, s, n);
            }
            for (int64_t g = 0; g < ng; g++) {
                const int64_t at = ((b * ng + g) * md->S + pos) * hs;
                if (md->kv_bf16) {
                    uint16_t *kc = (uint16_t *)L->k_cache + at, *vc = (uint16_t *)L->v_cache + at;
                    for (int64_t d = 0; d < hs; d++) {
                        kc[d] = bf16_round(k[g * hs + d]);
                        vc[d] = bf16_round(v[g * hs + d]);
                    }
                } else {
                    memcpy((float *)L->k_cache + at, k + g * hs, sizeof(float) * (size_t)hs);
                    memcpy((float *)L->v_cache + at, v + g * hs, sizeof(float) * (size_t)hs);
                }
            }
        }
        ok &= attend(md, L, qkv, row, B, pos, valid, scores, att);
        ok &= matvec(&L->proj, att, tmp, B, threads);
        for (int64_t b = 0; b < B; b++) {
            float *t = tmp + b * E, *xb = x + b * E;
            if (L->post_attention_norm) rmsnorm(t, L->post_attention_norm, t, E, md->eps);
            for (int64_t i = 0; i < E; i++) xb[i] += t[i];
            if (L->norm_2) rmsnorm(xb, L->norm_2, xn + b * E, E, md->eps);
            else memcpy(xn + b * E, xb, sizeof(float) * (size_t)E);
        }
        ok &= matvec(&L->fc_1, xn, h1, B, threads);
        ok &= matvec(&L->fc_2, xn, h2, B, threads);
        for (int64_t i = gate8(h1, h2, B * I, md->activation); i < B * I; i++)
            h1[i] = activation(h1[i], md->activation) * h2[i];
        ok &= matvec(&L->mlp_proj, h1, tmp, B, threads);
        for (int64_t b = 0; b < B; b++) {
            float *t = tmp + b * E, *xb = x + b * E;
            if (L->post_mlp_norm) rmsnorm(t, L->post_mlp_norm, t, E, md->eps);
            for (int64_t i = 0; i < E; i++) xb[i] += t[i];
        }
    }
    if (ok) {
        for (int64_t b = 0; b < B; b++) {
            if (md->ln_f) rmsnorm(x + b * E, md->ln_f, xn + b * E, E, md->eps);
            else memcpy(xn + b * E, x + b * E, sizeof(float) * (size_t)E);
        }
        const Mat *h = &md->head;
        if (top > 0 && md->screen_q && (h->kind == KIND_F32 || h->kind == KIND_BF16) &&
            head_top(xn, B, h->N, h->K, h->kind, h->w, h->bias, md->screen_q, md->screen_s, top, md->final_softcap,
                     logits, threads) > 0)
            ; /* done: the top logits, softcap included */
        else {
            ok &= matvec(h, xn, logits, B, threads);
            if (ok && md->final_softcap > 0) {
                const float cap = (float)md->final_softcap;
                for (int64_t i = 0; i < B * h->N; i++) logits[i] = tanhf(logits[i] / cap) * cap;
            }
        }
    }
    free(buf);
    return ok;
}
