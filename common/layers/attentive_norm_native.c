/* The four full-size passes of the fused Attentive Normalization (float32, v = x) as plain C loops.
 *
 * Wang et al., "Attentive Normalization for Conditional Image Generation", CVPR 2020 (Section 3). The algorithm and
 * the names are those of common/layers/attentive_norm_fused.py and attentive_norm_chunked.py; each function handles
 * one sample's pixels [p0, p1) in blocks of BLK pixels held in local arrays (so a block's intermediates stay in the
 * L1/L2 cache), with the pixel index innermost (contiguous, vectorised by the compiler). Sums over pixels are taken
 * per block in float, then added to double accumulators (one per calling thread, summed by the caller). Compiled at
 * first use by common/layers/attentive_norm_native.py; called from several threads at once on disjoint outputs.
 *
 * Shapes (row-major, float32 unless said): x, g, out, dx (C, HW); s (n, HW); cx (C); wlb (n, 1 + C) = [b | w];
 * coeffs (2C, n) = [gain; offset]; pm (n, 1 + 2C) = [dm; dT; dQ]^T; pg, po (n, C); hg, ht, hq, wlt (C, n).
 */
#include <math.h>
#include <stdlib.h>

#define BLK 64

#define VW 16
/* GCC / Clang vector extensions: one VW-float vector (lowered to the machine's SIMD registers), unaligned loads. */
typedef float vf __attribute__((vector_size(4 * VW)));
typedef float vfu __attribute__((vector_size(4 * VW), aligned(4)));

static inline long min_l(long a, long b) { return a < b ? a : b; }

/* tile (rows, BLK) <- src rows [q, q + m) of a (rows, HW) matrix, zero-padded to BLK columns. */
static void load_tile(float *tile, const float *src, int rows, long HW, long q, int m) {
    for (int r = 0; r < rows; r++) {
        const float *sr = src + r * HW + q;
        float *tr = tile + r * BLK;
        int j = 0;
        for (; j < m; j++) tr[j] = sr[j];
        for (; j < BLK; j++) tr[j] = 0.f;
    }
}

/* Pass 1: s = softmax([b | w] @ [1; x - cx]); mom (1 + 2C, n) += [1; x_c; x_c^2] @ s^T (if mom is not NULL). */
void an_layout_moments(const float *x, const float *cx, const float *wlb, float *s, double *mom, int C, int n,
                       long HW, long p0, long p1) {
    float *xc = malloc(sizeof(float) * C * BLK), *L = malloc(sizeof(float) * n * BLK);
    float *acc = calloc((size_t)(1 + 2 * C) * n, sizeof(float));
    for (long q = p0; q < p1; q += BLK) {
        int m = (int)min_l(BLK, p1 - q);
        for (int c = 0; c < C; c++) {
            const float *xr = x + c * HW + q;
            float cc = cx[c], *xcr = xc + c * BLK;
            for (int j = 0; j < m; j++) xcr[j] = xr[j] - cc;
        }
        for (int k = 0; k < n; k++) {
            const float *wk = wlb + k * (1 + C);
            float *Lk = L + k * BLK;
            for (int j = 0; j < m; j++) Lk[j] = wk[0];
            for (int c = 0; c < C; c++) {
                float wc = wk[1 + c];
                const float *xcr = xc + c * BLK;
                for (int j = 0; j < m; j++) Lk[j] += wc * xcr[j];
            }
        }
        float mx[BLK], sum[BLK];
        for (int j = 0; j < m; j++) mx[j] = L[j], sum[j] = 0.f;
        for (int k = 1; k < n; k++)
            for (int j = 0; j < m; j++) mx[j] = fmaxf(mx[j], L[k * BLK + j]);
        for (int k = 0; k < n; k++) {
            float *Lk = L + k * BLK;
            for (int j = 0; j < m; j++) {
                Lk[j] = expf(Lk[j] - mx[j]);
                sum[j] += Lk[j];
            }
        }
        for (int j = 0; j < m; j++) sum[j] = 1.f / sum[j];
        for (int k = 0; k < n; k++) {
            float *Lk = L + k * BLK, *sk = s + k * HW + q;
            for (int j = 0; j < m; j++) sk[j] = Lk[j] *= sum[j];
        }
        if (!mom) continue;
        for (int k = 0; k < n; k++) {
            const float *Lk = L + k * BLK;
            float m0 = 0.f;
            for (int j = 0; j < m; j++) m0 += Lk[j];
            acc[k] += m0;
            for (int c = 0; c < C; c++) {
                const float *xcr = xc + c * BLK;
                float a = 0.f, b = 0.f;
                for (int j = 0; j < m; j++) {
                    float t = Lk[j] * xcr[j];
                    a += t;
                    b += t * xcr[j];
                }
                acc[(1 + c) * n + k] += a;
                acc[(1 + C + c) * n + k] += b;
            }
        }
        if (((q - p0) / BLK) % 64 == 63) { /* flush every 64 blocks: float sums of at most 4096 pixels */
            for (int i = 0; i < (1 + 2 * C) * n; i++) mom[i] += acc[i], acc[i] = 0.f;
        }
    }
    if (mom)
        for (int i = 0; i < (1 + 2 * C) * n; i++) mom[i] += acc[i];
    free(xc), free(L), free(acc);
}

/* Pass 2: out = x + (x - cx) * (gain @ s) + offset @ s. The block's layout is copied into a zero-padded local tile
 * so that every inner loop has VW iterations (one vector register per accumulator). */
void an_output(const float *x, const float *cx, const float *s, const float *coeffs, float *out, int C, int n,
               long HW, long p0, long p1) {
    float *sb = malloc(sizeof(float) * n * BLK);
    for (long q = p0; q < p1; q += BLK) {
        int m = (int)min_l(BLK, p1 - q);
        load_tile(sb, s, n, HW, q, m);
        for (int c = 0; c < C; c++) {
            const float *gk = coeffs + c * n, *ok = coeffs + (C + c) * n, *xr = x + c * HW + q;
            float *orow = out + c * HW + q, cc = cx[c];
            for (int jj = 0; jj < m; jj += VW) {
                vf ga = {0}, of = {0};
                for (int k = 0; k < n; k++) {
                    vf sk = *(const vfu *)(sb + k * BLK + jj);
                    ga += gk[k] * sk, of += ok[k] * sk;
                }
                int w = m - jj < VW ? m - jj : VW;
                for (int j = 0; j < w; j++) orow[jj + j] = xr[jj + j] + (xr[jj + j] - cc) * ga[j] + of[j];
            }
        }
    }
    free(sb);
}

/* Backward pass 1: dgo (2C, n) += [sum_p (g x_c) s^T; sum_p g s^T]. */
void an_output_gradient_moments(const float *g, const float *x, const float *cx, const float *s, double *dgo, int C,
                                int n, long HW, long p0, long p1) {
    float *acc = calloc((size_t)2 * C * n, sizeof(float));
    for (long q = p0; q < p1; q += BLK) {
        int m = (int)min_l(BLK, p1 - q);
        for (int c = 0; c < C; c++) {
            const float *xr = x + c * HW + q, *gr = g + c * HW + q;
            float gv[BLK], cc = cx[c];
            for (int j = 0; j < m; j++) gv[j] = gr[j] * (xr[j] - cc);
            for (int k = 0; k < n; k++) {
                const float *sk = s + k * HW + q;
                float a = 0.f, b = 0.f;
                for (int j = 0; j < m; j++) a += gv[j] * sk[j], b += gr[j] * sk[j];
                acc[c * n + k] += a;
                acc[(C + c) * n + k] += b;
            }
        }
        if (((q - p0) / BLK) % 64 == 63) {
            for (int i = 0; i < 2 * C * n; i++) dgo[i] += acc[i], acc[i] = 0.f;
        }
    }
    for (int i = 0; i < 2 * C * n; i++) dgo[i] += acc[i];
    free(acc);
}

/* Backward pass 2 (v = x): dS = pm @ [1; x_c; x_c^2] + pg @ (g x_c) + po @ g; dl = s (dS - sum_k s dS);
 * dx = ht @ s + g (hg @ s) + x_c (hq @ s) + wlt @ dl; dwlb (n, 1 + C) += dl @ [1; x_c]^T. */
void an_input_gradient(const float *g, const float *x, const float *cx, const float *s, const float *pm,
                       const float *pg, const float *po, const float *hg, const float *ht, const float *hq,
                       const float *wlt, float *dx, double *dwlb, int C, int n, long HW, long p0, long p1) {
    float *xc = malloc(sizeof(float) * C * BLK), *gb = malloc(sizeof(float) * C * BLK);
    float *sb = malloc(sizeof(float) * n * BLK), *dl = calloc((size_t)n * BLK, sizeof(float));
    float *acc = calloc((size_t)n * (1 + C), sizeof(float));
    for (long q = p0; q < p1; q += BLK) {
        int m = (int)min_l(BLK, p1 - q);
        for (int c = 0; c < C; c++) {
            const float *xr = x + c * HW + q, *gr = g + c * HW + q;
            float cc = cx[c], *xcr = xc + c * BLK, *gbr = gb + c * BLK;
            for (int j = 0; j < m; j++) xcr[j] = xr[j] - cc, gbr[j] = gr[j];
        }
        load_tile(sb, s, n, HW, q, m);
        float dot[BLK] = {0};
        for (int k = 0; k < n; k++) {
            const float *pk = pm + k * (1 + 2 * C), *pgk = pg + k * C, *pok = po + k * C;
            float *d = dl + k * BLK;
            for (int j = 0; j < m; j++) d[j] = pk[0];
            for (int c = 0; c < C; c++) {
                float a = pk[1 + c], b = pk[1 + C + c], e = pgk[c], f = pok[c];
                const float *xcr = xc + c * BLK, *gbr = gb + c * BLK;
                for (int j = 0; j < m; j++) d[j] += xcr[j] * (a + b * xcr[j] + e * gbr[j]) + f * gbr[j];
            }
            const float *sk = sb + k * BLK;
            for (int j = 0; j < m; j++) dot[j] += sk[j] * d[j];
        }
        for (int k = 0; k < n; k++) {
            float *d = dl + k * BLK, *ak = acc + k * (1 + C);
            const float *sk = sb + k * BLK;
            float a0 = 0.f;
            for (int j = 0; j < m; j++) d[j] = sk[j] * (d[j] - dot[j]), a0 += d[j];
            ak[0] += a0;
            for (int c = 0; c < C; c++) {
                const float *xcr = xc + c * BLK;
                float a = 0.f;
                for (int j = 0; j < m; j++) a += d[j] * xcr[j];
                ak[1 + c] += a;
            }
        }
        for (int c = 0; c < C; c++) {
            const float *htc = ht + c * n, *hgc = hg + c * n, *hqc = hq + c * n, *wc = wlt + c * n;
            const float *xcr = xc + c * BLK, *gbr = gb + c * BLK;
            float *dr = dx + c * HW + q;
            for (int jj = 0; jj < m; jj += VW) {
                vf t2 = {0}, t1 = {0}, t3 = {0};
                for (int k = 0; k < n; k++) {
                    vf sk = *(const vfu *)(sb + k * BLK + jj), d = *(const vfu *)(dl + k * BLK + jj);
                    t2 += htc[k] * sk + wc[k] * d, t1 += hgc[k] * sk, t3 += hqc[k] * sk;
                }
                int w = m - jj < VW ? m - jj : VW;
                for (int j = 0; j < w; j++) dr[jj + j] = t2[j] + gbr[jj + j] * t1[j] + xcr[jj + j] * t3[j];
            }
        }
        if (((q - p0) / BLK) % 64 == 63) {
            for (int i = 0; i < n * (1 + C); i++) dwlb[i] += acc[i], acc[i] = 0.f;
        }
    }
    for (int i = 0; i < n * (1 + C); i++) dwlb[i] += acc[i];
    free(xc), free(gb), free(sb), free(dl), free(acc);
}
