// conv_cpu.cl: the wide convolution's GEMMs for CPU drivers (PoCL), where CLBlast runs the conv
// shapes (one side of 9..64 rows, the other 100k long) at 2-10 GFLOP/s.
//   conv_gw_partials: partial[g][j] (M x N) = sum over images n of group g and positions p of
//       piece j of A(n, m, p) * B(n, r, p): the weight gradient G . cols^T split along the
//       reduction (images x plane), summed into gW by accumulate_partials (conv.cl).
//   conv_small_a:     C(n, m, p) = sum_k A(m, k) * B(n, k, p) (+ bias[m]): a small matrix (the
//       weights, [Cout][C*KH*KW] or its transpose) times an image's rows: the forward (W . cols)
//       and the input gradient (W^T . G).
// Layout: every operand is addressed as base + offset + n*img + row*ld + p, so the same kernels
// read NCHW tensors (img = rows*P, ld = P) and the wide column matrix (img = P, ld = B*P) with no
// permute pass; p runs along a contiguous row.
// Mapping: one work-item per (piece, group) or (chunk of positions, image), work-group size 1 (on
// PoCL a work-group is a loop on one core), float16 vectors along p (one AVX-512 register). The
// host sizes a work-item's rows so what it re-reads stays in L2. Nothing goes through local memory.
// Tails (p not a multiple of 16, rows not a multiple of the tile) run with clamped row pointers and
// scalar loops, so every size is valid.

#define TM 4
#define TN 4
#define MB 8
// The tile loops are unrolled so the accumulator arrays live in registers (without it PoCL's
// compiler kept them on the stack: every FMA read and wrote memory).
#define UNROLL _Pragma("unroll")

inline float hsum16(const float16 v) { return hsum8(v.lo + v.hi); }

// Range (pieces, groups). Group g covers images [g*group_images, ...) of `batch`, piece j the
// positions [j*piece_len, ...) of a plane of `plane`; partial[(g*pieces + j)*M*N + m*N + r].
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void conv_gw_partials(__global const float *a, const int a_off, const int a_img, const int a_ld,
                      __global const float *b, const int b_off, const int b_img, const int b_ld,
                      __global float *partial, const int M, const int N, const int batch, const int plane,
                      const int group_images, const int piece_len) {
    const int j = get_global_id(0), g = get_global_id(1), pieces = get_global_size(0);
    const int p0 = j * piece_len, p1 = min(plane, p0 + piece_len), len = p1 - p0;
    const int n0 = g * group_images, n1 = min(batch, n0 + group_images);
    __global float *out = partial + ((size_t)g * pieces + j) * M * N;
    for (int m = 0; m < M; m += TM) {
        for (int r = 0; r < N; r += TN) {
            float16 acc[TM][TN];
            float tail[TM][TN];
            UNROLL for (int i = 0; i < TM; ++i)
                UNROLL for (int t = 0; t < TN; ++t) { acc[i][t] = (float16)(0.0f); tail[i][t] = 0.0f; }
            for (int n = n0; n < n1; ++n) {
                __global const float *ar[TM], *br[TN];
                UNROLL for (int i = 0; i < TM; ++i) ar[i] = a + a_off + (size_t)n * a_img + (size_t)min(m + i, M - 1) * a_ld + p0;
                UNROLL for (int t = 0; t < TN; ++t) br[t] = b + b_off + (size_t)n * b_img + (size_t)min(r + t, N - 1) * b_ld + p0;
                int q = 0;
                for (; q + 16 <= len; q += 16) {
                    float16 av[TM], bv[TN];
                    UNROLL for (int i = 0; i < TM; ++i) av[i] = LD16G(ar[i] + q);
                    UNROLL for (int t = 0; t < TN; ++t) bv[t] = LD16G(br[t] + q);
                    UNROLL for (int i = 0; i < TM; ++i)
                        UNROLL for (int t = 0; t < TN; ++t) acc[i][t] = fma(av[i], bv[t], acc[i][t]);
                }
                if (q < len && len >= 16) {
                    // The last rem positions as one vector ending at the piece's end, the lanes
                    // already summed zeroed in both operands (0 * 0: no NaN from inf data).
                    const int16 lane = (int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
                    const int16 keep = lane >= (int16)(16 - (len - q));
                    float16 av[TM], bv[TN];
                    UNROLL for (int i = 0; i < TM; ++i) av[i] = select((float16)(0.0f), LD16G(ar[i] + len - 16), keep);
                    UNROLL for (int t = 0; t < TN; ++t) bv[t] = select((float16)(0.0f), LD16G(br[t] + len - 16), keep);
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
                    if (m + i < M && r + t < N) out[(m + i) * N + r + t] = hsum16(acc[i][t]) + tail[i][t];
        }
    }
}

// Range (chunks, images). A(m, k) = w[m*a_m + k*a_k]; B(n, k, p) = b[b_off + n*b_img + k*b_ld + p];
// C(n, m, p) = c[c_off + n*c_img + m*c_ld + p] for m < M, p in this work-item's chunk of `plane`.
// The chunk's K rows of B stay in L2 while every block of MB output rows is computed from them, NV
// vectors of 16 positions at a time (each A value broadcast once per NV vectors). A chunk's last
// positions, when fewer than 16 are left, run as one vector ending at the chunk's end: it recomputes
// a few positions of the previous vector with the same arithmetic (same values, same work-item), so
// only chunks shorter than 16 take the scalar loop.
#define SMALL_A_STEP(NV, P)                                                                         \
    {                                                                                               \
        float16 acc[MB][NV];                                                                        \
        UNROLL for (int i = 0; i < MB; ++i)                                                                \
            UNROLL for (int v = 0; v < NV; ++v) acc[i][v] = (float16)(0.0f);                               \
        __global const float *bk = bn + (P);                                                        \
        for (int k = 0; k < K; ++k, bk += b_ld) {                                                   \
            float16 bv[NV];                                                                         \
            UNROLL for (int v = 0; v < NV; ++v) bv[v] = LD16G(bk + 16 * v);                                    \
            UNROLL for (int i = 0; i < MB; ++i) {                                                          \
                const float16 av = (float16)(wr[i][k * a_k]);                                       \
                UNROLL for (int v = 0; v < NV; ++v) acc[i][v] = fma(av, bv[v], acc[i][v]);                 \
            }                                                                                       \
        }                                                                                           \
        UNROLL for (int i = 0; i < MB; ++i)                                                                \
            if (m + i < M)                                                                          \
                UNROLL for (int v = 0; v < NV; ++v) ST16G(acc[i][v] + bi[i], cn + (size_t)(m + i) * c_ld + (P) + 16 * v); \
    }

__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void conv_small_a(__global const float *w, const int a_m, const int a_k,
                  __global const float *b, const int b_off, const int b_img, const int b_ld,
                  __global float *c, const int c_off, const int c_img, const int c_ld,
                  __global const float *bias, const int has_bias, const int M, const int K, const int plane, const int chunk) {
    const int j = get_global_id(0), n = get_global_id(1);
    const int p0 = j * chunk, p1 = min(plane, p0 + chunk);
    __global const float *bn = b + b_off + (size_t)n * b_img;
    __global float *cn = c + c_off + (size_t)n * c_img;
    for (int m = 0; m < M; m += MB) {
        __global const float *wr[MB];
        float bi[MB];
        UNROLL for (int i = 0; i < MB; ++i) {
            wr[i] = w + min(m + i, M - 1) * a_m;
            bi[i] = has_bias ? bias[min(m + i, M - 1)] : 0.0f;
        }
        int p = p0;
        for (; p + 32 <= p1; p += 32) SMALL_A_STEP(2, p)
        for (; p + 16 <= p1; p += 16) SMALL_A_STEP(1, p)
        if (p < p1 && p1 - p0 >= 16) {
            SMALL_A_STEP(1, p1 - 16)
            p = p1;
        }
        for (; p < p1; ++p) {
            float acc[MB];
            UNROLL for (int i = 0; i < MB; ++i) acc[i] = 0.0f;
            for (int k = 0; k < K; ++k) {
                const float bv = bn[(size_t)k * b_ld + p];
                UNROLL for (int i = 0; i < MB; ++i) acc[i] = fma(wr[i][k * a_k], bv, acc[i]);
            }
            UNROLL for (int i = 0; i < MB; ++i)
                if (m + i < M) cn[(size_t)(m + i) * c_ld + p] = acc[i] + bi[i];
        }
    }
}
