// winograd_cpu.cl: F(2x2, 3x3) for CPU drivers (PoCL), the whole convolution after the filter
// transform in one launch: the maths, the effective convolution (forward or, with the rotated
// filters of winograd_filter FLIP = 1, the input gradient) and the layout of U are in winograd.cl.
// Lanes: every tile row of every image gets TW + 1 lanes (the last one junk, never stored), so lane
// L is image n, tile row a, tile column t with L = (n*TH + a)*(TW + 1) + t, and the 4x4 patch of
// lane L starts at position 2L of a "staged row" per patch row r: staged[r][2L + j] = in[n][i][2a -
// PH + r][2t - PW + j] (0 outside the image). Because a tile row's staged segment is 2(TW + 1) long,
// consecutive lanes are consecutive patches and the patches of 16 lanes are two float16 loads and an
// even/odd split; small planes share a chunk with the next image instead of idling lanes.
// Mapping: one work-item (work-group of 1) per chunk of LANES = 32 lanes. It stages each input
// channel's 4 x 66 positions in local memory (contiguous row pieces, zero elsewhere), transforms them
// into V[xi][i][32] (local, 16*KI*32 floats: 128 KB at KI = 64), then per block of OB output
// channels runs the 16 small GEMMs M_xi = U_xi . V_xi (OB x 2 float16 accumulators in registers,
// U read from global, L2-resident) into local memory, applies the output transform, interleaves the
// 2x2 outputs back into staged rows and writes contiguous row pieces of the NCHW output.

#ifndef OB
#define OB 8
#endif
#define LANES 32
// Staged positions per patch row: 2*LANES + 2 needed, rounded up to whole float16s.
#define SQ 80
#define UNROLL _Pragma("unroll")

#ifdef __clang__
#define LD16L(p) (*(__local const float16u *)(p))
#define ST16L(v, p) (*(__local float16u *)(p) = (v))
#else
#define LD16L(p) vload16(0, p)
#define ST16L(v, p) vstore16(v, 0, p)
#endif

// dst[0 .. n) = src[0 .. n): whole float16s, the last one ending at n (rewriting a few positions
// with the same values), scalars below 16.
inline void copy_to_local(__local float *dst, __global const float *src, const int n) {
    if (n >= 16) {
        int k = 0;
        for (; k + 16 <= n; k += 16) ST16L(LD16G(src + k), dst + k);
        if (k < n) ST16L(LD16G(src + n - 16), dst + n - 16);
    } else {
        for (int k = 0; k < n; ++k) dst[k] = src[k];
    }
}

inline void copy_to_global(__global float *dst, __local const float *src, const int n) {
    if (n >= 16) {
        int k = 0;
        for (; k + 16 <= n; k += 16) ST16G(LD16L(src + k), dst + k);
        if (k < n) ST16G(LD16L(src + n - 16), dst + n - 16);
    } else {
        for (int k = 0; k < n; ++k) dst[k] = src[k];
    }
}

// in [N][KI][H][W], u [16][KO][KI], out [N][KO][OH][OW]; TH x TW tiles per image. Range (chunks).
// Local: vbuf 16*KI*LANES floats, mbuf 16*OB*LANES, sbuf 4*SQ + 2*2*LANES.
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void winograd_fused(__global const float *in, __global const float *u, __global float *out,
                    __global const float *bias, const int has_bias, const int N, const int KI, const int KO,
                    const int H, const int W, const int OH, const int OW, const int PH, const int PW, const int TH, const int TW,
                    __local float *vbuf, __local float *mbuf, __local float *sbuf) {
    const int row2 = 2 * (TW + 1), Q0 = 2 * LANES * (int)get_global_id(0);
    const size_t xs = (size_t)KI * LANES;  // V's stride between transform positions xi
    __local float *ybuf = sbuf + 4 * SQ;

    // V[xi][i][lane] for every input channel i.
    for (int i = 0; i < KI; ++i) {
        for (int k = 0; k < 4 * SQ; k += 16) ST16L((float16)(0.0f), sbuf + k);
        for (int q0 = 0; q0 < 2 * LANES + 2;) {
            const int Q = Q0 + q0, ag = Q / row2, col0 = Q - ag * row2;
            const int len = min(2 * LANES + 2 - q0, row2 - col0);
            const int n = ag / TH, a = ag - n * TH;
            const int v0 = max(col0, PW), v1 = min(col0 + len, PW + W);
            if (n < N && v1 > v0) {
                __global const float *src = in + ((size_t)n * KI + i) * H * W + (v0 - PW);
                UNROLL for (int r = 0; r < 4; ++r) {
                    const int y = 2 * a - PH + r;
                    if (y >= 0 && y < H) copy_to_local(sbuf + r * SQ + q0 + (v0 - col0), src + (size_t)y * W, v1 - v0);
                }
            }
            q0 += len;
        }
        UNROLL for (int h = 0; h < 2; ++h) {
            // w[r][j] = (d_r B)[j] for patch row r: even/odd split of positions 2l .. 2l + 3.
            float16 w[4][4];
            UNROLL for (int r = 0; r < 4; ++r) {
                __local const float *p = sbuf + r * SQ + 32 * h;
                const float16 a0 = LD16L(p), a1 = LD16L(p + 16), b0 = LD16L(p + 2), b1 = LD16L(p + 18);
                const float16 e = (float16)(a0.even, a1.even), o = (float16)(a0.odd, a1.odd);
                const float16 e2 = (float16)(b0.even, b1.even), o2 = (float16)(b0.odd, b1.odd);
                w[r][0] = e - e2;
                w[r][1] = o + e2;
                w[r][2] = e2 - o;
                w[r][3] = o - o2;
            }
            __local float *dst = vbuf + (size_t)i * LANES + 16 * h;
            UNROLL for (int j = 0; j < 4; ++j) {
                ST16L(w[0][j] - w[2][j], dst + (0 + j) * xs);
                ST16L(w[1][j] + w[2][j], dst + (4 + j) * xs);
                ST16L(w[2][j] - w[1][j], dst + (8 + j) * xs);
                ST16L(w[1][j] - w[3][j], dst + (12 + j) * xs);
            }
        }
    }

    const uint16 lo = (uint16)(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const uint16 hi = lo + (uint16)(8);
    for (int o = 0; o < KO; o += OB) {
        // M_xi = U_xi . V_xi for output channels o .. o + OB.
        for (int xi = 0; xi < 16; ++xi) {
            __global const float *ur[OB];
            UNROLL for (int r = 0; r < OB; ++r) ur[r] = u + ((size_t)xi * KO + min(o + r, KO - 1)) * KI;
            float16 acc[OB][2];
            UNROLL for (int r = 0; r < OB; ++r) acc[r][0] = acc[r][1] = (float16)(0.0f);
            __local const float *vb = vbuf + xi * xs;
            for (int i = 0; i < KI; ++i, vb += LANES) {
                const float16 v0 = LD16L(vb), v1 = LD16L(vb + 16);
                UNROLL for (int r = 0; r < OB; ++r) {
                    const float16 a = (float16)(ur[r][i]);
                    acc[r][0] = fma(a, v0, acc[r][0]);
                    acc[r][1] = fma(a, v1, acc[r][1]);
                }
            }
            UNROLL for (int r = 0; r < OB; ++r) {
                ST16L(acc[r][0], mbuf + (xi * OB + r) * LANES);
                ST16L(acc[r][1], mbuf + (xi * OB + r) * LANES + 16);
            }
        }
        // Y = A^T M A (+ bias), interleaved into two staged output rows, then written row piece by piece.
        for (int r = 0; r < OB && o + r < KO; ++r) {
            const float b = has_bias ? bias[o + r] : 0.0f;
            UNROLL for (int h = 0; h < 2; ++h) {
                float16 q[16];
                UNROLL for (int xi = 0; xi < 16; ++xi) q[xi] = LD16L(mbuf + (xi * OB + r) * LANES + 16 * h);
                float16 e0[4], e1[4];
                UNROLL for (int s = 0; s < 4; ++s) {
                    e0[s] = q[s] + q[4 + s] + q[8 + s];
                    e1[s] = q[4 + s] - q[8 + s] - q[12 + s];
                }
                const float16 y00 = e0[0] + e0[1] + e0[2] + b, y01 = e0[1] - e0[2] - e0[3] + b;
                const float16 y10 = e1[0] + e1[1] + e1[2] + b, y11 = e1[1] - e1[2] - e1[3] + b;
                ST16L(shuffle2(y00, y01, lo), ybuf + 32 * h);
                ST16L(shuffle2(y00, y01, hi), ybuf + 32 * h + 16);
                ST16L(shuffle2(y10, y11, lo), ybuf + 2 * LANES + 32 * h);
                ST16L(shuffle2(y10, y11, hi), ybuf + 2 * LANES + 32 * h + 16);
            }
            for (int q0 = 0; q0 < 2 * LANES;) {
                const int Q = Q0 + q0, ag = Q / row2, col0 = Q - ag * row2;
                const int len = min(2 * LANES - q0, row2 - col0);
                const int n = ag / TH, a = ag - n * TH, c1 = min(col0 + len, OW);
                if (n < N && c1 > col0) {
                    __global float *dst = out + ((size_t)n * KO + o + r) * OH * OW + col0;
                    UNROLL for (int dy = 0; dy < 2; ++dy) {
                        const int y = 2 * a + dy;
                        if (y < OH) copy_to_global(dst + (size_t)y * OW, ybuf + dy * 2 * LANES + q0, c1 - col0);
                    }
                }
                q0 += len;
            }
        }
    }
}
