/* The four full-size passes of the fused Attentive Normalization (float32, v = x) as plain C loops.
 *
 * Wang et al., "Attentive Normalization for Conditional Image Generation", CVPR 2020 (Section 3). The algorithm and
 * the names are those of common/layers/attentive_norm_fused.py and attentive_norm_chunked.py. Each pass handles
 * one sample's pixels [p0, p1) in blocks of BLK pixels (the exported an_* functions loop over a run of samples):
 * the block's rows ([1; x_c; x_c^2; g x_c; g], the layout, ...) are copied into zero-padded local tiles
 * (L1/L2-resident), and every step is one of two small matrix products on
 * tiles, written with vector registers (GCC / Clang vector extensions, VW floats each):
 *   mm_nn:  out (R, BLK) = A (R, K) @ B (K, BLK)                 (4 rows x 2 vectors of accumulators)
 *   mm_nt:  acc (RA, RB) += A (RA, BLK) @ B (RB, BLK)^T          (TA x TB pairs; per-lane partial sums)
 * The per-lane partial sums over the pixels are reduced once per call into the caller's double accumulators. Compiled
 * at first use by common/layers/attentive_norm_native.py; called from several threads at once on disjoint outputs.
 *
 * Shapes (row-major, float32 unless said): x, g, out, dx (C, HW); s (n, HW); cx (C); wlb (n, 1 + C) = [b | w];
 * coeffs (2C, n) = [gain; offset]; pu (n, 1 + 4C) = [dm; dT; dQ; gain; offset]^T; h3 (3C, n) = [h_1; h_2; h_3];
 * wlt (C, n). Double accumulators: mom (1 + 2C, n), dgo (2C, n), dwlb (n, 1 + C).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE__)
#include <xmmintrin.h>
/* Denormals (layout entries below ~1e-38, which a peaked softmax at AN's temperature 0.1 produces) can take slow
 * microcode assists on x86; each call flushes them to zero (FTZ / DAZ) and restores the caller's mode. */
#define FLUSH_BEGIN unsigned int csr_saved = _mm_getcsr(); _mm_setcsr(csr_saved | 0x8040);
#define FLUSH_END _mm_setcsr(csr_saved);
#else
#define FLUSH_BEGIN
#define FLUSH_END
#endif

/* VW floats per vector: the machine's native vector width (gcc's wider vector types are split into several
 * registers; a 16-float type on a 16-register AVX2 machine spilled mm_nt's accumulators to the stack and ran the
 * passes ~10x slower). TA x TB: mm_nt's register tile, TA * TB accumulators + TA + TB operands within the
 * register file (32 vector registers with AVX-512, 16 with AVX / SSE). */
#ifndef VW
#if defined(__AVX512F__)
#define VW 16
#elif defined(__AVX__)
#define VW 8
#else
#define VW 4
#endif
#endif
#ifndef TA
#if defined(__AVX512F__)
#define TA 4
#else
#define TA 2
#endif
#endif
#define TB 4
#ifndef BLK /* pixels per block: 128 measured faster than 64 (on a 2-core AMD EPYC VM: the four passes at 512^2,
              * C 32, n 16 in 38-45 ms against 53.5; at (4, 64, 128^2) 18-21 against 24) and than 32 or 256 */
#define BLK 128
#endif
#define NV (BLK / VW)
typedef float vf __attribute__((vector_size(4 * VW)));
typedef float vfu __attribute__((vector_size(4 * VW), aligned(4)));
typedef int vi __attribute__((vector_size(4 * VW)));

/* The build's vector width, block size and mm_nt tile (reported by benchmarks). */
void an_build_info(int *info) { info[0] = VW, info[1] = BLK, info[2] = TA, info[3] = TB; }

static inline vf ld(const float *p) { return *(const vfu *)p; }
static inline void st(float *p, vf v) { *(vfu *)p = v; }
static inline long min_l(long a, long b) { return a < b ? a : b; }
static inline float hsum(vf v) {
    float t = 0.f;
    for (int j = 0; j < VW; j++) t += v[j];
    return t;
}

/* exp of a vector of x <= 0 (logits minus their maximum), written here rather than left to the compiler: whether a
 * loop of expf calls is vectorised (through glibc's libmvec) depends on the compiler's cost model for the machine
 * (gcc 12 tuning for znver3 calls scalar expf: ~10 ns each). exp(x) = 2^k e^r, k = round(x / ln 2),
 * r = x - k ln 2 in [-0.35, 0.35] (ln 2 in two parts), e^r by its Taylor polynomial to degree 6 (truncation
 * error r^7 / 5040 < 1.2e-7 relative); 2^k is built in the exponent bits. x below -87 is clamped (exp < 1.7e-38,
 * which no layout sum notices: the largest entry contributes exp(0) = 1). */
static inline vf vexp_nonpos(vf x) {
    const vf lo = x * 0.f - 87.f;
    vi small = x < lo;
    x = (vf)(((vi)lo & small) | ((vi)x & ~small));
    vf t = x * 1.44269504088896341f + 0.5f;
    vi k = __builtin_convertvector(t, vi); /* truncation toward zero: floor for t >= 0 ... */
    k -= (vi)(__builtin_convertvector(k, vf) > t) & 1; /* ... and for t < 0 */
    vf kf = __builtin_convertvector(k, vf);
    vf r = x - kf * 0.693145751953125f;
    r = r - kf * 1.428606765330187e-06f;
    vf p = 1.f / 720.f + r * 0.f;
    p = p * r + 1.f / 120.f;
    p = p * r + 1.f / 24.f;
    p = p * r + 1.f / 6.f;
    p = p * r + 0.5f;
    p = p * r + 1.f;
    p = p * r + 1.f;
    vf scale = (vf)((k + 127) << 23);
    return p * scale;
}

/* tile rows [0, rows) <- src rows [q, q + m) of a (rows, HW) matrix minus shift[r] (if shift), zero-padded. */
static void load_rows(float *tile, const float *src, int rows, long HW, long q, int m, const float *shift) {
    for (int r = 0; r < rows; r++) {
        const float *sr = src + r * HW + q;
        float *tr = tile + r * BLK, c = shift ? shift[r] : 0.f;
        if (m == BLK) { /* full block: written with vector operations (not left to the compiler's tuning) */
            for (int v = 0; v < NV; v++) st(tr + v * VW, ld(sr + v * VW) - c);
            continue;
        }
        int j = 0;
        for (; j < m; j++) tr[j] = sr[j] - c;
        for (; j < BLK; j++) tr[j] = 0.f;
    }
}

/* out (R, BLK) = A (R, K; row stride lda) @ B (K, BLK). */
static void mm_nn(float *out, const float *A, int lda, const float *B, int R, int K) {
    int r = 0;
    for (; r + 4 <= R; r += 4) {
        const float *a0 = A + r * lda, *a1 = a0 + lda, *a2 = a1 + lda, *a3 = a2 + lda;
        for (int v = 0; v < NV; v += 2) {
            vf c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0}, c20 = {0}, c21 = {0}, c30 = {0}, c31 = {0};
            for (int k = 0; k < K; k++) {
                vf b0 = ld(B + k * BLK + v * VW), b1 = ld(B + k * BLK + (v + 1) * VW);
                c00 += a0[k] * b0, c01 += a0[k] * b1, c10 += a1[k] * b0, c11 += a1[k] * b1;
                c20 += a2[k] * b0, c21 += a2[k] * b1, c30 += a3[k] * b0, c31 += a3[k] * b1;
            }
            float *o = out + r * BLK + v * VW;
            st(o, c00), st(o + VW, c01), st(o + BLK, c10), st(o + BLK + VW, c11);
            st(o + 2 * BLK, c20), st(o + 2 * BLK + VW, c21), st(o + 3 * BLK, c30), st(o + 3 * BLK + VW, c31);
        }
    }
    for (; r < R; r++) {
        const float *a = A + r * lda;
        for (int v = 0; v < NV; v++) {
            vf c = {0};
            for (int k = 0; k < K; k++) c += a[k] * ld(B + k * BLK + v * VW);
            st(out + r * BLK + v * VW, c);
        }
    }
}

/* acc[i * RB + j] += per-lane sums over the block of A[i] * B[j] (A (RA, BLK), B (RB, BLK)). */
static void mm_nt(vf *acc, const float *A, int RA, const float *B, int RB) {
    int i = 0;
    for (; i + TA <= RA; i += TA) {
        int j = 0;
        for (; j + TB <= RB; j += TB) {
            vf c[TA][TB] = {{{0}}};
            for (int v = 0; v < NV; v++) {
                vf a[TA], b[TB];
                for (int t = 0; t < TA; t++) a[t] = ld(A + (i + t) * BLK + v * VW);
                for (int u = 0; u < TB; u++) b[u] = ld(B + (j + u) * BLK + v * VW);
                for (int t = 0; t < TA; t++)
                    for (int u = 0; u < TB; u++) c[t][u] += a[t] * b[u];
            }
            for (int t = 0; t < TA; t++)
                for (int u = 0; u < TB; u++) acc[(i + t) * RB + j + u] += c[t][u];
        }
        for (; j < RB; j++)
            for (int t = 0; t < TA; t++) {
                vf c = {0};
                for (int v = 0; v < NV; v++) c += ld(A + (i + t) * BLK + v * VW) * ld(B + j * BLK + v * VW);
                acc[(i + t) * RB + j] += c;
            }
    }
    for (; i < RA; i++)
        for (int j = 0; j < RB; j++) {
            vf c = {0};
            for (int v = 0; v < NV; v++) c += ld(A + i * BLK + v * VW) * ld(B + j * BLK + v * VW);
            acc[i * RB + j] += c;
        }
}

/* Per-thread scratch buffers, kept from call to call (the callers' worker threads persist) and grown when a call
 * needs more: a fresh malloc of a tile above glibc's mmap threshold maps fresh pages on every call (~1 us per 4 KiB
 * page on a VM: ~40 us per call of the input-gradient pass at C 32, more than the work for a few hundred pixels).
 * Slots are shared by the four passes (one pass runs at a time on a thread). */
#define SLOTS 5
static _Thread_local void *scratch_buf[SLOTS];
static _Thread_local size_t scratch_cap[SLOTS];

static void *scratch(int slot, size_t bytes) {
    if (scratch_cap[slot] < bytes) {
        free(scratch_buf[slot]);
        bytes = (bytes + 63) / 64 * 64; /* aligned_alloc: a multiple of the alignment */
        scratch_buf[slot] = aligned_alloc(64, bytes);
        scratch_cap[slot] = scratch_buf[slot] ? bytes : 0;
    }
    return scratch_buf[slot];
}

static vf *vzeros(int slot, size_t count) { /* vector-aligned, zeroed */
    vf *p = scratch(slot, count * sizeof(vf));
    if (p) memset(p, 0, count * sizeof(vf));
    return p;
}

static void reduce_into(double *out, const vf *acc, size_t count) {
    for (size_t i = 0; i < count; i++) out[i] += hsum(acc[i]);
}

/* Pass 1: s = softmax([b | w] @ [1; x_c]); mom (1 + 2C, n) += [1; x_c; x_c^2] @ s^T (if mom is not NULL). */
static void layout_moments(const float *x, const float *cx, const float *wlb, float *s, double *mom, int C, int n,
                           long HW, long p0, long p1) {
    FLUSH_BEGIN
    float *u = scratch(0, sizeof(float) * (1 + 2 * C) * BLK), *L = scratch(1, sizeof(float) * n * BLK);
    vf *acc = mom ? vzeros(2, (size_t)(1 + 2 * C) * n) : NULL;
    for (int j = 0; j < BLK; j++) u[j] = 1.f;
    for (long q = p0; q < p1; q += BLK) {
        int m = (int)min_l(BLK, p1 - q);
        load_rows(u + BLK, x, C, HW, q, m, cx);
        mm_nn(L, wlb, 1 + C, u, n, 1 + C);
        for (int v = 0; v < NV; v++) { /* softmax over the entities: subtract the maximum */
            vf mx = ld(L + v * VW);
            for (int k = 1; k < n; k++) {
                vf l = ld(L + k * BLK + v * VW);
                vi up = l > mx;
                mx = (vf)(((vi)l & up) | ((vi)mx & ~up));
            }
            for (int k = 0; k < n; k++) st(L + k * BLK + v * VW, ld(L + k * BLK + v * VW) - mx);
        }
        for (int i = 0; i < n * BLK; i += VW) st(L + i, vexp_nonpos(ld(L + i)));
        for (int v = 0; v < NV; v++) {
            vf sum = {0};
            for (int k = 0; k < n; k++) sum += ld(L + k * BLK + v * VW);
            vf inv = 1.f / sum;
            for (int k = 0; k < n; k++) st(L + k * BLK + v * VW, ld(L + k * BLK + v * VW) * inv);
        }
        for (int k = 0; k < n; k++) {
            memcpy(s + k * HW + q, L + k * BLK, sizeof(float) * m);
            memset(L + k * BLK + m, 0, sizeof(float) * (BLK - m)); /* padded pixels carry no mass */
        }
        if (!mom) continue;
        for (int c = 0; c < C; c++)
            for (int v = 0; v < NV; v++) {
                vf xv = ld(u + (1 + c) * BLK + v * VW);
                st(u + (1 + C + c) * BLK + v * VW, xv * xv);
            }
        mm_nt(acc, u, 1 + 2 * C, L, n);
    }
    if (mom) reduce_into(mom, acc, (size_t)(1 + 2 * C) * n);
    FLUSH_END
}

/* Pass 2: out = x + x_c * (gain @ s) + offset @ s. */
static void output(const float *x, const float *cx, const float *s, const float *coeffs, float *out, int C, int n,
                   long HW, long p0, long p1) {
    FLUSH_BEGIN
    float *sb = scratch(0, sizeof(float) * n * BLK), *go = scratch(1, sizeof(float) * 2 * C * BLK);
    for (long q = p0; q < p1; q += BLK) {
        int m = (int)min_l(BLK, p1 - q);
        load_rows(sb, s, n, HW, q, m, NULL);
        mm_nn(go, coeffs, n, sb, 2 * C, n);
        for (int c = 0; c < C; c++) {
            const float *xr = x + c * HW + q, *ga = go + c * BLK, *of = go + (C + c) * BLK;
            float *orow = out + c * HW + q, cc = cx[c];
            if (m == BLK) {
                for (int v = 0; v < NV; v++) {
                    vf xv = ld(xr + v * VW);
                    st(orow + v * VW, xv + (xv - cc) * ld(ga + v * VW) + ld(of + v * VW));
                }
                continue;
            }
            for (int j = 0; j < m; j++) orow[j] = xr[j] + (xr[j] - cc) * ga[j] + of[j];
        }
    }
    FLUSH_END
}

/* Backward pass 1: dgo (2C, n) += [g x_c; g] @ s^T. */
static void output_gradient_moments(const float *g, const float *x, const float *cx, const float *s, double *dgo,
                                    int C, int n, long HW, long p0, long p1) {
    FLUSH_BEGIN
    float *gu = scratch(0, sizeof(float) * 2 * C * BLK), *sb = scratch(1, sizeof(float) * n * BLK);
    vf *acc = vzeros(2, (size_t)2 * C * n);
    for (long q = p0; q < p1; q += BLK) {
        int m = (int)min_l(BLK, p1 - q);
        load_rows(gu, x, C, HW, q, m, cx);
        load_rows(gu + C * BLK, g, C, HW, q, m, NULL);
        for (int i = 0; i < C * BLK; i += VW) st(gu + i, ld(gu + i) * ld(gu + C * BLK + i));
        load_rows(sb, s, n, HW, q, m, NULL);
        mm_nt(acc, gu, 2 * C, sb, n);
    }
    reduce_into(dgo, acc, (size_t)2 * C * n);
    FLUSH_END
}

/* Backward pass 2 (v = x): dS = pu @ [1; x_c; x_c^2; g x_c; g]; dl = s (dS - sum_k s dS);
 * dx = h_2 @ s + g (h_1 @ s) + x_c (h_3 @ s) + wlt @ dl; dwlb (n, 1 + C) += dl @ [1; x_c]^T. */
static void input_gradient(const float *g, const float *x, const float *cx, const float *s, const float *pu,
                           const float *h3, const float *wlt, float *dx, double *dwlb, int C, int n, long HW, long p0,
                           long p1) {
    FLUSH_BEGIN
    float *u = scratch(0, sizeof(float) * (1 + 4 * C) * BLK), *sb = scratch(1, sizeof(float) * n * BLK);
    float *dl = scratch(2, sizeof(float) * n * BLK), *t = scratch(3, sizeof(float) * 4 * C * BLK);
    vf *acc = vzeros(4, (size_t)n * (1 + C));
    for (int j = 0; j < BLK; j++) u[j] = 1.f;
    float *xc = u + BLK, *x2 = u + (1 + C) * BLK, *gx = u + (1 + 2 * C) * BLK, *gb = u + (1 + 3 * C) * BLK;
    for (long q = p0; q < p1; q += BLK) {
        int m = (int)min_l(BLK, p1 - q);
        load_rows(xc, x, C, HW, q, m, cx);
        load_rows(gb, g, C, HW, q, m, NULL);
        load_rows(sb, s, n, HW, q, m, NULL);
        for (int i = 0; i < C * BLK; i += VW) {
            vf xv = ld(xc + i);
            st(x2 + i, xv * xv), st(gx + i, ld(gb + i) * xv);
        }
        mm_nn(dl, pu, 1 + 4 * C, u, n, 1 + 4 * C); /* dS */
        for (int v = 0; v < NV; v++) {
            vf dot = {0};
            for (int k = 0; k < n; k++) dot += ld(sb + k * BLK + v * VW) * ld(dl + k * BLK + v * VW);
            for (int k = 0; k < n; k++) {
                float *d = dl + k * BLK + v * VW;
                st(d, ld(sb + k * BLK + v * VW) * (ld(d) - dot));
            }
        }
        mm_nt(acc, dl, n, u, 1 + C);
        mm_nn(t, h3, n, sb, 3 * C, n);          /* [h_1; h_2; h_3] @ s */
        mm_nn(t + 3 * C * BLK, wlt, n, dl, C, n); /* wlt @ dl */
        for (int c = 0; c < C; c++) {
            const float *t1 = t + c * BLK, *t2 = t + (C + c) * BLK, *t3 = t + (2 * C + c) * BLK;
            const float *tw = t + (3 * C + c) * BLK, *xr = xc + c * BLK, *gr = gb + c * BLK;
            float *dr = dx + c * HW + q;
            if (m == BLK) {
                for (int v = 0; v < NV; v++) {
                    int o = v * VW;
                    st(dr + o, ld(t2 + o) + ld(tw + o) + ld(gr + o) * ld(t1 + o) + ld(xr + o) * ld(t3 + o));
                }
                continue;
            }
            for (int j = 0; j < m; j++) dr[j] = t2[j] + tw[j] + gr[j] * t1[j] + xr[j] * t3[j];
        }
    }
    reduce_into(dwlb, acc, (size_t)n * (1 + C));
    FLUSH_END
}

/* The exported passes: samples [i0, i1) of a batch, pixels [p0, p1) of each (one call covers several samples when
 * their maps are small: a call from Python costs a few microseconds, the work for 64 pixels about as much). Every
 * pointer is the batch's first element of a contiguous (B, ...) array with the per-sample shapes above. */
void an_layout_moments(const float *x, const float *cx, const float *wlb, float *s, double *mom, int C, int n,
                       long HW, long i0, long i1, long p0, long p1) {
    for (long i = i0; i < i1; i++)
        layout_moments(x + i * C * HW, cx + i * C, wlb + i * n * (1 + C), s + i * n * HW,
                       mom ? mom + i * (1 + 2 * C) * n : NULL, C, n, HW, p0, p1);
}

void an_output(const float *x, const float *cx, const float *s, const float *coeffs, float *out, int C, int n,
               long HW, long i0, long i1, long p0, long p1) {
    for (long i = i0; i < i1; i++)
        output(x + i * C * HW, cx + i * C, s + i * n * HW, coeffs + i * 2 * C * n, out + i * C * HW, C, n, HW, p0,
               p1);
}

void an_output_gradient_moments(const float *g, const float *x, const float *cx, const float *s, double *dgo, int C,
                                int n, long HW, long i0, long i1, long p0, long p1) {
    for (long i = i0; i < i1; i++)
        output_gradient_moments(g + i * C * HW, x + i * C * HW, cx + i * C, s + i * n * HW, dgo + i * 2 * C * n, C, n,
                                HW, p0, p1);
}

void an_input_gradient(const float *g, const float *x, const float *cx, const float *s, const float *pu,
                       const float *h3, const float *wlt, float *dx, double *dwlb, int C, int n, long HW, long i0,
                       long i1, long p0, long p1) {
    for (long i = i0; i < i1; i++)
        input_gradient(g + i * C * HW, x + i * C * HW, cx + i * C, s + i * n * HW, pu + i * n * (1 + 4 * C),
                       h3 + i * 3 * C * n, wlt + i * C * n, dx + i * C * HW, dwlb + i * n * (1 + C), C, n, HW, p0, p1);
}
