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

// The weight gradient, the adjoint of the forward in g. With Y = A^T [(G g G^T) (.) V] A per tile
// and dY the tile's 2x2 output gradient, dL/dU = sum over tiles of Y' (.) V, Y' = A dY A^T (4x4),
// and dL/dg = G^T (dL/dU) G (3x3). So for every (o, i) the 16 sums over the N*TH*TW tiles
//     M[o][i][xi] = sum_tiles Y'_o[xi] * V_i[xi],  then  gW[o][i] += G^T M[o][i] G.
// winograd_gw_partials: one work-item (work-group of 1) per block of `per` consecutive chunks of
// WLANES lanes (the forward's lanes: junk lanes and tiles past the edge read dY = 0, so they add
// nothing). Per chunk it stages and transforms every input channel into V[i][lane][xi] and every
// output-gradient channel into Y'[o][lane][xi] (local; one float16 per lane, xi along the vector),
// then adds Y'[o][lane] * V[i][lane] over the chunk's lanes to M[o][i] (local, float16 per pair):
// KB x CB float16 accumulators in registers, elementwise FMAs, no broadcasts, no horizontal sums.
// At the end M goes to partial[item][o][i][16]; winograd_gw_finish sums the items and applies G.

#ifndef WLANES
#define WLANES 32
#endif
#define KB 4
#define CB 4
#define WSQ (2 * WLANES + 16)

// x [N][KI][H][W], gy [N][KO][OH][OW], partial [items][KO][KI][16]. Range (items).
// Local: mbuf 16*KO*KI, vbuf 16*KI*WLANES, ybuf 16*KO*WLANES, sbuf 4*WSQ floats.
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void winograd_gw_partials(__global const float *x, __global const float *gy, __global float *partial,
                          const int N, const int KI, const int KO, const int H, const int W, const int OH, const int OW,
                          const int PH, const int PW, const int TH, const int TW, const int chunks, const int per,
                          __local float *mbuf, __local float *vbuf, __local float *ybuf, __local float *sbuf) {
    const int item = get_global_id(0), row2 = 2 * (TW + 1);
    for (int k = 0; k < 16 * KO * KI; k += 16) ST16L((float16)(0.0f), mbuf + k);
    const int ch1 = min(chunks, (item + 1) * per);
    for (int ch = item * per; ch < ch1; ++ch) {
        const int Q0 = 2 * WLANES * ch;
        // V[i][lane] = B^T d B: the forward's staged patch rows, then per lane.
        for (int i = 0; i < KI; ++i) {
            for (int k = 0; k < 4 * WSQ; k += 16) ST16L((float16)(0.0f), sbuf + k);
            for (int q0 = 0; q0 < 2 * WLANES + 2;) {
                const int Q = Q0 + q0, ag = Q / row2, col0 = Q - ag * row2;
                const int len = min(2 * WLANES + 2 - q0, row2 - col0);
                const int n = ag / TH, a = ag - n * TH;
                const int v0 = max(col0, PW), v1 = min(col0 + len, PW + W);
                if (n < N && v1 > v0) {
                    __global const float *src = x + ((size_t)n * KI + i) * H * W + (v0 - PW);
                    UNROLL for (int r = 0; r < 4; ++r) {
                        const int y = 2 * a - PH + r;
                        if (y >= 0 && y < H) copy_to_local(sbuf + r * WSQ + q0 + (v0 - col0), src + (size_t)y * W, v1 - v0);
                    }
                }
                q0 += len;
            }
            __local float *dst = vbuf + (size_t)i * WLANES * 16;
            for (int l = 0; l < WLANES; ++l) {
                float4 w[4];
                UNROLL for (int r = 0; r < 4; ++r) {
                    const float4 d = vload4(0, sbuf + r * WSQ + 2 * l);
                    w[r] = (float4)(d.x - d.z, d.y + d.z, d.z - d.y, d.y - d.w);
                }
                ST16L((float16)(w[0] - w[2], w[1] + w[2], w[2] - w[1], w[1] - w[3]), dst + 16 * l);
            }
        }
        // Y'[o][lane] = A dY A^T, dY from two staged output rows (0 past the edge and in junk lanes).
        for (int o = 0; o < KO; ++o) {
            for (int k = 0; k < 2 * WSQ; k += 16) ST16L((float16)(0.0f), sbuf + k);
            for (int q0 = 0; q0 < 2 * WLANES;) {
                const int Q = Q0 + q0, ag = Q / row2, col0 = Q - ag * row2;
                const int len = min(2 * WLANES - q0, row2 - col0);
                const int n = ag / TH, a = ag - n * TH, c1 = min(col0 + len, OW);
                if (n < N && c1 > col0) {
                    __global const float *src = gy + ((size_t)n * KO + o) * OH * OW + col0;
                    UNROLL for (int dy = 0; dy < 2; ++dy) {
                        const int y = 2 * a + dy;
                        if (y < OH) copy_to_local(sbuf + dy * WSQ + q0, src + (size_t)y * OW, c1 - col0);
                    }
                }
                q0 += len;
            }
            __local float *dst = ybuf + (size_t)o * WLANES * 16;
            for (int l = 0; l < WLANES; ++l) {
                const float2 y0 = vload2(0, sbuf + 2 * l), y1 = vload2(0, sbuf + WSQ + 2 * l);
                const float2 t0 = y0, t1 = y0 + y1, t2 = y0 - y1, t3 = -y1;
                ST16L((float16)((float4)(t0.x, t0.x + t0.y, t0.x - t0.y, -t0.y), (float4)(t1.x, t1.x + t1.y, t1.x - t1.y, -t1.y),
                                (float4)(t2.x, t2.x + t2.y, t2.x - t2.y, -t2.y), (float4)(t3.x, t3.x + t3.y, t3.x - t3.y, -t3.y)),
                      dst + 16 * l);
            }
        }
        // M[o][i] += sum over the chunk's lanes of Y'[o][lane] (.) V[i][lane].
        for (int o = 0; o < KO; o += KB) {
            __local const float *yr[KB];
            UNROLL for (int r = 0; r < KB; ++r) yr[r] = ybuf + (size_t)min(o + r, KO - 1) * WLANES * 16;
            for (int i = 0; i < KI; i += CB) {
                __local const float *vr[CB];
                UNROLL for (int t = 0; t < CB; ++t) vr[t] = vbuf + (size_t)min(i + t, KI - 1) * WLANES * 16;
                float16 acc[KB][CB];
                UNROLL for (int r = 0; r < KB; ++r)
                    UNROLL for (int t = 0; t < CB; ++t) acc[r][t] = (float16)(0.0f);
                for (int l = 0; l < 16 * WLANES; l += 16) {
                    float16 yv[KB], vv[CB];
                    UNROLL for (int r = 0; r < KB; ++r) yv[r] = LD16L(yr[r] + l);
                    UNROLL for (int t = 0; t < CB; ++t) vv[t] = LD16L(vr[t] + l);
                    UNROLL for (int r = 0; r < KB; ++r)
                        UNROLL for (int t = 0; t < CB; ++t) acc[r][t] = fma(yv[r], vv[t], acc[r][t]);
                }
                UNROLL for (int r = 0; r < KB; ++r)
                    UNROLL for (int t = 0; t < CB; ++t)
                        if (o + r < KO && i + t < KI) {
                            __local float *m = mbuf + ((size_t)(o + r) * KI + i + t) * 16;
                            ST16L(LD16L(m) + acc[r][t], m);
                        }
            }
        }
    }
    copy_to_global(partial + (size_t)item * KO * KI * 16, mbuf, KO * KI * 16);
}

// gw[o][i] += G^T (sum over items of partial[item][o][i]) G, G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1].
// Range (KI, KO).
__kernel void winograd_gw_finish(__global const float *partial, __global float *gw, const int KO, const int KI, const int items) {
    const int i = get_global_id(0), o = get_global_id(1);
    if (i >= KI || o >= KO) return;
    const size_t at = ((size_t)o * KI + i) * 16, stride = (size_t)KO * KI * 16;
    float16 s = (float16)(0.0f);
    for (int p = 0; p < items; ++p) s += LD16G(partial + p * stride + at);
    // Z = G^T X (3x4, rows of X are s[4r .. 4r + 3]), then dW = Z G (3x3).
    const float4 x0 = s.s0123, x1 = s.s4567, x2 = s.s89ab, x3 = s.scdef;
    float4 z[3];
    z[0] = x0 + 0.5f * (x1 + x2);
    z[1] = 0.5f * (x1 - x2);
    z[2] = 0.5f * (x1 + x2) + x3;
    __global float *dst = gw + ((size_t)o * KI + i) * 9;
    for (int r = 0; r < 3; ++r) {
        dst[3 * r + 0] += z[r].x + 0.5f * (z[r].y + z[r].z);
        dst[3 * r + 1] += 0.5f * (z[r].y - z[r].z);
        dst[3 * r + 2] += 0.5f * (z[r].y + z[r].z) + z[r].w;
    }
}
