// conv_implicit_cpu.cl: the wide convolution for CPU drivers (PoCL) as an implicit GEMM: each
// work-item gathers the im2col columns of its own positions into local memory and multiplies from
// there, so there is no column buffer in global memory and no separate im2col or col2im launch.
//   conv_implicit_fwd: out(n, m, p) = sum_k W(m, k) * cols_x(n, k, p) (+ bias[m]), the forward;
//       cols_x is im2col of x: row k = (c*KH + i)*KW + j, value x[n][c][p_y*SH - PH + i*DH][p_x*SW - PW + j*DW].
//   conv_implicit_gi:  gx(n, c, q) = sum_k W^T(c, k) * cols_g(n, k, q), the input gradient as a
//       gather (each gx position sums the taps that hit it: no race, no col2im); row k = (o*KH + i)*KW
//       + j over output channels o, value gout[n][o][(q_y + PH - i*DH)/SH][(q_x + PW - j*DW)/SW] where
//       both divisions are exact and in range, else 0 (for stride 1 this is the convolution of gout
//       with the weights rotated 180 degrees and Cin/Cout swapped; for stride s most rows are zeros).
//   conv_gw_implicit:  partial[g][j](m, r) = sum over images n of group g and positions p of piece
//       j of gout(n, m, p) * cols_x(n, r, p): conv_cpu.cl's conv_gw_partials reading its columns
//       from local memory; accumulate_partials (conv.cl) sums the partials into gW.
// Layout: x, gout, out, gx NCHW; W [Cout][Cin][KH][KW]; A(m, k = o*KH*KW + t) = w[m*a_m + o*a_o + t]
// (forward: a_m = Cin*KH*KW, a_o = KH*KW; input gradient: a_m = KH*KW, a_o = Cin*KH*KW).
// Mapping: one work-item per (chunk of positions, image) or (piece, group of images), work-group
// size 1 (on PoCL a work-group is a loop on one core), float16 vectors along the positions. Local
// memory: the work-item's columns, rows x ld floats (the host sizes ld, and checks it against
// CL_DEVICE_LOCAL_MEM_SIZE). The arithmetic after the gather is conv_cpu.cl's (same order of FMAs).
// Geometry (KH, KW, SH, SW, PH, PW, DH, DW) is compiled in as defines.

#ifndef KH
#define KH 3
#endif
#ifndef KW
#define KW 3
#endif
#ifndef SH
#define SH 1
#endif
#ifndef SW
#define SW 1
#endif
#ifndef PH
#define PH 0
#endif
#ifndef PW
#define PW 0
#endif
#ifndef DH
#define DH 1
#endif
#ifndef DW
#define DW 1
#endif
#define TAPS (KH * KW)
#define TM 4
#define TN 4
#define MB 8
#define UNROLL _Pragma("unroll")

#ifdef __clang__
typedef float float16ul __attribute__((ext_vector_type(16), aligned(4)));
#define LD16L(p) (*(__local const float16ul *)(p))
#else
#define LD16L(p) vload16(0, p)
#endif

inline float hsum16i(const float16 v) { return hsum8(v.lo + v.hi); }

// dst[(o*TAPS + t)*ld + p - p0] for o < outer, t < TAPS, p in [p0, p1) of an out_h x out_w plane:
// the column values described at the top, from `src` (outer planes of in_h x in_w). Each (row,
// output row) is zeros outside the tap's valid range and a (stride 1: contiguous) copy inside it.
inline void gather_columns(__local float *dst, const int ld, __global const float *src, const int outer, const int in_h,
                           const int in_w, const int out_w, const int p0, const int p1, const int transposed) {
    const int y0 = p0 / out_w, y1 = (p1 - 1) / out_w;
    for (int o = 0; o < outer; ++o) {
        __global const float *plane = src + (size_t)o * in_h * in_w;
        for (int t = 0; t < TAPS; ++t) {
            const int i = t / KW, j = t - i * KW;
            __local float *row = dst + (size_t)(o * TAPS + t) * ld;
            // Forward: output column xo reads xo*SW + off; valid for xo in [lo, hi).
            // Transposed: output column xo reads (xo - off) / SW, valid when exact and in range.
            const int off = j * DW - PW;
            int lo, hi;
            if (!transposed) {
                lo = off >= 0 ? 0 : (-off + SW - 1) / SW;
                hi = in_w - off > 0 ? (in_w - off + SW - 1) / SW : 0;
            } else {
                lo = max(0, off);
                hi = off + (in_w - 1) * SW + 1;
            }
            for (int y = y0; y <= y1; ++y) {
                const int xa = y == y0 ? p0 - y * out_w : 0, xb = y == y1 ? p1 - y * out_w : out_w;
                __local float *d = row + (y * out_w - p0);
                int sy;
                bool ok;
                if (!transposed) {
                    sy = y * SH - PH + i * DH;
                    ok = sy >= 0 && sy < in_h;
                } else {
                    const int ty = y + PH - i * DH;
                    ok = ty >= 0 && ty % SH == 0 && ty / SH < in_h;
                    sy = ty / SH;
                }
                if (!ok) {
                    for (int x = xa; x < xb; ++x) d[x] = 0.0f;
                    continue;
                }
                __global const float *s = plane + (size_t)sy * in_w;
                const int l = clamp(lo, xa, xb), h = clamp(hi, l, xb);
                for (int x = xa; x < l; ++x) d[x] = 0.0f;
                if (!transposed) {
                    if (SW == 1) {
                        for (int x = l; x < h; ++x) d[x] = s[x + off];
                    } else {
                        for (int x = l; x < h; ++x) d[x] = s[x * SW + off];
                    }
                } else if (SW == 1) {
                    for (int x = l; x < h; ++x) d[x] = s[x - off];
                } else {
                    for (int x = l; x < h; ++x) {
                        const int tx = x - off;
                        d[x] = tx % SW == 0 ? s[tx / SW] : 0.0f;
                    }
                }
                for (int x = h; x < xb; ++x) d[x] = 0.0f;
            }
        }
    }
}

// One block of MB output rows x NV vectors of 16 positions starting at position P of the chunk:
// conv_cpu.cl's SMALL_A_STEP with B in local memory (row k at bl + k*ld) and the weights addressed
// as A(m, o*TAPS + t) = wr[i][o*a_o + t].
#define IMPLICIT_STEP(NV, P)                                                                        \
    {                                                                                               \
        float16 acc[MB][NV];                                                                        \
        UNROLL for (int i = 0; i < MB; ++i)                                                         \
            UNROLL for (int v = 0; v < NV; ++v) acc[i][v] = (float16)(0.0f);                        \
        __local const float *bk = cols + ((P) - p0);                                                \
        for (int o = 0; o < outer; ++o) {                                                           \
            for (int t = 0; t < TAPS; ++t, bk += ld) {                                              \
                float16 bv[NV];                                                                     \
                UNROLL for (int v = 0; v < NV; ++v) bv[v] = LD16L(bk + 16 * v);                     \
                UNROLL for (int i = 0; i < MB; ++i) {                                               \
                    const float16 av = (float16)(wr[i][o * a_o + t]);                               \
                    UNROLL for (int v = 0; v < NV; ++v) acc[i][v] = fma(av, bv[v], acc[i][v]);      \
                }                                                                                   \
            }                                                                                       \
        }                                                                                           \
        UNROLL for (int i = 0; i < MB; ++i)                                                         \
            if (m + i < M)                                                                          \
                UNROLL for (int v = 0; v < NV; ++v) ST16G(acc[i][v] + bi[i], cn + (size_t)(m + i) * plane + (P) + 16 * v); \
    }

// C(n, m, p) = sum over rows k of A(m, k) * cols(k, p) (+ bias[m]) for the chunk [p0, p1): the
// product after the gather, shared by the forward and the input gradient.
inline void implicit_product(__global const float *w, const int a_m, const int a_o, __local const float *cols, const int ld,
                             __global float *cn, __global const float *bias, const int has_bias, const int M, const int outer,
                             const int plane, const int p0, const int p1) {
    for (int m = 0; m < M; m += MB) {
        __global const float *wr[MB];
        float bi[MB];
        UNROLL for (int i = 0; i < MB; ++i) {
            wr[i] = w + min(m + i, M - 1) * a_m;
            bi[i] = has_bias ? bias[min(m + i, M - 1)] : 0.0f;
        }
        int p = p0;
        for (; p + 32 <= p1; p += 32) IMPLICIT_STEP(2, p)
        for (; p + 16 <= p1; p += 16) IMPLICIT_STEP(1, p)
        if (p < p1 && p1 - p0 >= 16) {
            IMPLICIT_STEP(1, p1 - 16)
            p = p1;
        }
        for (; p < p1; ++p) {
            float acc[MB];
            UNROLL for (int i = 0; i < MB; ++i) acc[i] = 0.0f;
            __local const float *bk = cols + (p - p0);
            for (int o = 0; o < outer; ++o)
                for (int t = 0; t < TAPS; ++t, bk += ld) {
                    const float bv = *bk;
                    UNROLL for (int i = 0; i < MB; ++i) acc[i] = fma(wr[i][o * a_o + t], bv, acc[i]);
                }
            UNROLL for (int i = 0; i < MB; ++i)
                if (m + i < M) cn[(size_t)(m + i) * plane + p] = acc[i] + bi[i];
        }
    }
}

// Range (chunks, images): out[n] (M = Cout channels of out_h x out_w) for positions [j*chunk, ...)
// from x[n] (C = `outer` channels of height x width). cols: outer*TAPS rows of ld >= chunk floats.
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void conv_implicit_fwd(__global const float *x, __global const float *w, __global float *out, __global const float *bias,
                       const int has_bias, const int M, const int outer, const int height, const int width, const int out_h,
                       const int out_w, const int chunk, __local float *cols, const int ld) {
    const int j = get_global_id(0), n = get_global_id(1), plane = out_h * out_w;
    const int p0 = j * chunk, p1 = min(plane, p0 + chunk);
    if (p0 >= p1) return;
    gather_columns(cols, ld, x + (size_t)n * outer * height * width, outer, height, width, out_w, p0, p1, 0);
    implicit_product(w, outer * TAPS, TAPS, cols, ld, out + (size_t)n * M * plane, bias, has_bias, M, outer, plane, p0, p1);
}

// Range (chunks, images): gx[n] (M = C channels of height x width) for positions [j*chunk, ...)
// from gout[n] (`outer` = Cout channels of out_h x out_w). cols: outer*TAPS rows of ld >= chunk.
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void conv_implicit_gi(__global const float *gout, __global const float *w, __global float *gx, const int M, const int outer,
                      const int height, const int width, const int out_h, const int out_w, const int chunk,
                      __local float *cols, const int ld) {
    const int j = get_global_id(0), n = get_global_id(1), plane = height * width;
    const int p0 = j * chunk, p1 = min(plane, p0 + chunk);
    if (p0 >= p1) return;
    gather_columns(cols, ld, gout + (size_t)n * outer * out_h * out_w, outer, out_h, out_w, width, p0, p1, 1);
    implicit_product(w, TAPS, M * TAPS, cols, ld, gx + (size_t)n * M * plane, w, 0, M, outer, plane, p0, p1);
}

// Range (pieces, groups): conv_cpu.cl's conv_gw_partials with A = gout (M = Cout rows) and B the
// columns of x (N = C*TAPS rows), gathered per image of the group into cols[(n - n0)*N*len + r*len
// + q] (len = this piece's length), then the same 4 x 4 register tiles, FMA order and tails.
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void conv_gw_implicit(__global const float *gout, __global const float *x, __global float *partial, const int M, const int C,
                      const int batch, const int height, const int width, const int out_h, const int out_w,
                      const int group_images, const int piece_len, __local float *cols) {
    const int j = get_global_id(0), g = get_global_id(1), pieces = get_global_size(0), N = C * TAPS, plane = out_h * out_w;
    const int p0 = j * piece_len, p1 = min(plane, p0 + piece_len), len = p1 - p0;
    const int n0 = g * group_images, n1 = min(batch, n0 + group_images);
    __global float *out = partial + ((size_t)g * pieces + j) * M * N;
    for (int n = n0; n < n1; ++n)
        gather_columns(cols + (size_t)(n - n0) * N * len, len, x + (size_t)n * C * height * width, C, height, width, out_w, p0, p1, 0);
    for (int m = 0; m < M; m += TM) {
        for (int r = 0; r < N; r += TN) {
            float16 acc[TM][TN];
            float tail[TM][TN];
            UNROLL for (int i = 0; i < TM; ++i)
                UNROLL for (int t = 0; t < TN; ++t) { acc[i][t] = (float16)(0.0f); tail[i][t] = 0.0f; }
            for (int n = n0; n < n1; ++n) {
                __global const float *ar[TM];
                __local const float *br[TN];
                UNROLL for (int i = 0; i < TM; ++i) ar[i] = gout + ((size_t)n * M + min(m + i, M - 1)) * plane + p0;
                UNROLL for (int t = 0; t < TN; ++t) br[t] = cols + ((size_t)(n - n0) * N + min(r + t, N - 1)) * len;
                int q = 0;
                for (; q + 16 <= len; q += 16) {
                    float16 av[TM], bv[TN];
                    UNROLL for (int i = 0; i < TM; ++i) av[i] = LD16G(ar[i] + q);
                    UNROLL for (int t = 0; t < TN; ++t) bv[t] = LD16L(br[t] + q);
                    UNROLL for (int i = 0; i < TM; ++i)
                        UNROLL for (int t = 0; t < TN; ++t) acc[i][t] = fma(av[i], bv[t], acc[i][t]);
                }
                if (q < len && len >= 16) {
                    const int16 lane = (int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
                    const int16 keep = lane >= (int16)(16 - (len - q));
                    float16 av[TM], bv[TN];
                    UNROLL for (int i = 0; i < TM; ++i) av[i] = select((float16)(0.0f), LD16G(ar[i] + len - 16), keep);
                    UNROLL for (int t = 0; t < TN; ++t) bv[t] = select((float16)(0.0f), LD16L(br[t] + len - 16), keep);
                    UNROLL for (int i = 0; i < TM; ++i)
                        UNROLL for (int t = 0; t < TN; ++t) acc[i][t] = fma(av[i], bv[t], acc[i][t]);
                    q = len;
                }
                for (; q < len; ++q)
                    UNROLL for (int i = 0; i < TM; ++i)
                        UNROLL for (int t = 0; t < TN; ++t) tail[i][t] = fma(ar[i][q], br[t][q], tail[i][t]);
            }
            UNROLL for (int i = 0; i < TM; ++i)
                UNROLL for (int t = 0; t < TN; ++t)
                    if (m + i < M && r + t < N) out[(m + i) * N + r + t] = hsum16i(acc[i][t]) + tail[i][t];
        }
    }
}
