// winograd.cl: 3x3 stride-1 convolutions by Winograd's F(2x2, 3x3) (Lavin & Gray 2015), the
// portable path (any OpenCL device; GPUs run its GEMMs with CLBlast) and the filter transform that
// the CPU-driver kernel (winograd_cpu.cl) shares.
//
// The effective convolution: out[o][y][x] = sum_{i, r, s} g[o][i][r][s] * in[i][y + r - PH][x + s - PW]
// over KI input and KO output channels (in = 0 outside the image). The output is cut into 2x2 tiles
// (TH x TW of them, the last row/column overhanging the edge when OH/OW is odd); tile (a, t) reads the
// 4x4 input patch d at rows 2a - PH .. +3, columns 2t - PW .. +3 and
//     Y (2x2) = A^T [ sum_i U_i (.) V_i ] A,  U = G g G^T (4x4),  V = B^T d B (4x4),
//     B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
//     A^T = [1 1 1 0; 0 1 -1 -1],
// so for each of the 16 positions xi of the 4x4 transform domain the channel sum is a GEMM
//     M_xi (KO x T) = U_xi (KO x KI) . V_xi (KI x T)  over the T tiles.
// The input gradient of a stride-1 3x3 convolution is the same computation on gradOut with the
// weights rotated by 180 degrees, input and output channels swapped and padding 2 - pad (FLIP = 1).
// Layouts: U[xi][o][i] (u + (xi*KO + o)*KI + i), V[xi][i][t], M[xi][o][t] with t = n*TH*TW + a*TW + tc
// over the images of one chunk; everything else NCHW.
// Mapping: winograd_filter one work-item per (o, i); winograd_input one per (tile, input channel);
// winograd_output one per (tile, output channel). Nothing goes through local memory.

// U[xi][o][i] = (G g G^T)[xi], g = w[o][i] (FLIP = 0, w is [KO][KI][3][3]) or w[i][o] rotated by 180
// degrees (FLIP = 1, w is [KI][KO][3][3]). Range (KI, KO).
__kernel void winograd_filter(__global const float *w, __global float *u, const int KO, const int KI, const int flip) {
    const int i = get_global_id(0), o = get_global_id(1);
    if (i >= KI || o >= KO) return;
    float g[3][3];
    if (flip) {
        __global const float *src = w + ((size_t)i * KO + o) * 9;
        for (int r = 0; r < 3; ++r)
            for (int s = 0; s < 3; ++s) g[r][s] = src[(2 - r) * 3 + (2 - s)];
    } else {
        __global const float *src = w + ((size_t)o * KI + i) * 9;
        for (int r = 0; r < 3; ++r)
            for (int s = 0; s < 3; ++s) g[r][s] = src[r * 3 + s];
    }
    // t = G g (4x3), then U = t G^T (4x4).
    float t[4][3];
    for (int s = 0; s < 3; ++s) {
        t[0][s] = g[0][s];
        t[1][s] = 0.5f * (g[0][s] + g[1][s] + g[2][s]);
        t[2][s] = 0.5f * (g[0][s] - g[1][s] + g[2][s]);
        t[3][s] = g[2][s];
    }
    const size_t plane = (size_t)KO * KI, at = (size_t)o * KI + i;
    for (int r = 0; r < 4; ++r) {
        u[(r * 4 + 0) * plane + at] = t[r][0];
        u[(r * 4 + 1) * plane + at] = 0.5f * (t[r][0] + t[r][1] + t[r][2]);
        u[(r * 4 + 2) * plane + at] = 0.5f * (t[r][0] - t[r][1] + t[r][2]);
        u[(r * 4 + 3) * plane + at] = t[r][2];
    }
}

// V[xi][i][t] = (B^T d B)[xi] for the tiles of images n0 .. n0 + b of `in` ([N][KI][H][W]).
// Range (T = b*TH*TW, KI).
__kernel void winograd_input(__global const float *in, __global float *v, const int n0, const int KI, const int H, const int W,
                             const int PH, const int PW, const int TH, const int TW, const int T) {
    const int t = get_global_id(0), i = get_global_id(1);
    if (t >= T || i >= KI) return;
    const int per = TH * TW, nl = t / per, a = (t % per) / TW, tc = t % TW;
    __global const float *src = in + ((size_t)(n0 + nl) * KI + i) * H * W;
    const int y0 = 2 * a - PH, x0 = 2 * tc - PW;
    float d[4][4];
    for (int r = 0; r < 4; ++r)
        for (int s = 0; s < 4; ++s) {
            const int y = y0 + r, x = x0 + s;
            d[r][s] = (y >= 0 && y < H && x >= 0 && x < W) ? src[y * W + x] : 0.0f;
        }
    // e = B^T d (rows), then V = e B (columns).
    float e[4][4];
    for (int s = 0; s < 4; ++s) {
        e[0][s] = d[0][s] - d[2][s];
        e[1][s] = d[1][s] + d[2][s];
        e[2][s] = d[2][s] - d[1][s];
        e[3][s] = d[1][s] - d[3][s];
    }
    const size_t plane = (size_t)KI * T, at = (size_t)i * T + t;
    for (int r = 0; r < 4; ++r) {
        v[(r * 4 + 0) * plane + at] = e[r][0] - e[r][2];
        v[(r * 4 + 1) * plane + at] = e[r][1] + e[r][2];
        v[(r * 4 + 2) * plane + at] = e[r][2] - e[r][1];
        v[(r * 4 + 3) * plane + at] = e[r][1] - e[r][3];
    }
}

// out[n0 + n][o] (OH x OW, NCHW with KO channels) = A^T M A (+ bias[o]) for each tile, the
// overhanging row/column of edge tiles dropped. Range (T, KO).
__kernel void winograd_output(__global const float *m, __global float *out, __global const float *bias, const int has_bias,
                              const int n0, const int KO, const int OH, const int OW, const int TH, const int TW, const int T) {
    const int t = get_global_id(0), o = get_global_id(1);
    if (t >= T || o >= KO) return;
    const int per = TH * TW, nl = t / per, a = (t % per) / TW, tc = t % TW;
    const size_t plane = (size_t)KO * T, at = (size_t)o * T + t;
    float q[4][4];
    for (int xi = 0; xi < 16; ++xi) q[xi / 4][xi % 4] = m[xi * plane + at];
    // e = A^T q (2x4), then Y = e A (2x2).
    float e[2][4];
    for (int s = 0; s < 4; ++s) {
        e[0][s] = q[0][s] + q[1][s] + q[2][s];
        e[1][s] = q[1][s] - q[2][s] - q[3][s];
    }
    const float b = has_bias ? bias[o] : 0.0f;
    __global float *dst = out + ((size_t)(n0 + nl) * KO + o) * OH * OW;
    for (int r = 0; r < 2; ++r) {
        const int y = 2 * a + r, x = 2 * tc;
        if (y >= OH) break;
        dst[y * OW + x] = e[r][0] + e[r][1] + e[r][2] + b;
        if (x + 1 < OW) dst[y * OW + x + 1] = e[r][1] - e[r][2] - e[r][3] + b;
    }
}
