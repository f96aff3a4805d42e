// pool_cpu.cl: max pooling forward and backward for CPU drivers (PoCL; OpenCLBackend.poolVariant .cpu).
// Follows pool.cl (concatenated by Kernels.swift): same maths, defines POOL_K/S/P and window helpers.
// A work-group runs as a loop on one core there and a work-item that walks memory contiguously with
// explicit vectors beats PoCL's vectorisation across work-items, so: work-groups of ONE work-item,
// each owning one (n, c) plane (global size = planes), no barriers.
//   forward: output row by output row; the interior outputs (whole window inside the image) sixteen
//     at a time in float16 lanes (stride 1: one unaligned load per window column; stride 2: even and
//     odd lanes of two loads; other strides: single loads), the last group of a row overlapping the one
//     before it rather than finishing scalar; the clipped edges one at a time with pool.cl's
//     pool_max_window. Same compare-and-select sequence in the same row-major order per output, so the
//     results, NaN and ties included, are bit-identical to max_pool_forward.
//   backward: SCATTERS each output gradient to its argmax (one work-item per plane: no two work-items
//     write the same address). The input rows an output row's windows cover (at most K) are
//     accumulated in a __local buffer of K rows (zeroed as they enter); a row is written out, once,
//     when no later output row covers it, and rows no window covers are written as zeros. Each input
//     element receives its gradients in output row-major order starting from +0, exactly as
//     max_pool_backward's gather adds them, so the sums are bit-identical too. Argmax values outside
//     the rows of their output's window (not produced by the forward pass) are ignored.
// Measured on PoCL (2-core Xeon, `sge bench --quick` 8x64x112x112 3/2): pool.cl 45 / 100 ms, these 3.8 / 4.7 ms.

// Unaligned vector loads and stores (LD16G, ST8G, ST16G, LD8L, ST8L) come from vector_prelude.cl.

// Window column kw of sixteen neighbouring outputs: the values p[0], p[S], ..., p[15S], reading no
// float outside [p, p + 15S] (stride 2: the even lanes of p[0..15] and the odd lanes of p[15..30]).
#if POOL_S == 1
#define POOL_LD_STRIDED(p) LD16G(p)
#elif POOL_S == 2
#define POOL_LD_STRIDED(p) ((float16)(LD16G(p).even, LD16G((p) + 15).odd))
#else
#define POOL_LD_STRIDED(p) \
    (float16)((p)[0], (p)[POOL_S], (p)[2 * POOL_S], (p)[3 * POOL_S], (p)[4 * POOL_S], (p)[5 * POOL_S], (p)[6 * POOL_S], \
              (p)[7 * POOL_S], (p)[8 * POOL_S], (p)[9 * POOL_S], (p)[10 * POOL_S], (p)[11 * POOL_S], (p)[12 * POOL_S],  \
              (p)[13 * POOL_S], (p)[14 * POOL_S], (p)[15 * POOL_S])
#endif

// Outputs ow .. ow + 15 of one output row, all with their whole window inside the row (columns ws + 0..K-1
// for ws = ow*S - P), over input rows [h0, h1): pool_max_window's selects, sixteen lanes at a time.
inline void pool_max16(__global const float *xp, const int W, const int h0, const int h1, const int ow,
                       __global float *yr, __global float *ar) {
    const int16 lane = (int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15) * POOL_S;
    const int ws = ow * POOL_S - POOL_P;
    float16 best = (float16)(-INFINITY);
    int16 best_index = (int16)(h0 * W + ws) + lane;
    for (int ih = h0; ih < h1; ++ih) {
        __global const float *row = xp + ih * W + ws;
        for (int kw = 0; kw < POOL_K; ++kw) {
            const float16 v = POOL_LD_STRIDED(row + kw);
            const int16 better = v > best || v != v;
            best = select(best, v, better);
            best_index = select(best_index, (int16)(ih * W + ws + kw) + lane, better);
        }
    }
    ST16G(best, yr + ow);
    ST16G(convert_float16(best_index), ar + ow);
}

__kernel void max_pool_forward_cpu(__global const float *x, __global float *y, __global float *argmax,
                                   const int planes, const int H, const int W, const int OH, const int OW) {
    const int plane = get_global_id(0);
    if (plane >= planes) return;
    __global const float *xp = x + (size_t)plane * H * W;
    __global float *yp = y + (size_t)plane * OH * OW, *ap = argmax + (size_t)plane * OH * OW;
    // Outputs [ow_in0, ow_in1) have their whole window inside the row.
    const int span = W + POOL_P - POOL_K;
    const int ow_in0 = min((POOL_P + POOL_S - 1) / POOL_S, OW);
    const int ow_in1 = span < 0 ? ow_in0 : max(min(span / POOL_S + 1, OW), ow_in0);
    for (int oh = 0; oh < OH; ++oh) {
        const int hs = oh * POOL_S - POOL_P;
        const int h0 = max(hs, 0), h1 = min(hs + POOL_K, H);
        __global float *yr = yp + oh * OW, *ar = ap + oh * OW;
        int ow = 0;
        for (; ow < ow_in0; ++ow) {
            const int ws = ow * POOL_S - POOL_P;
            pool_max_window(xp, W, h0, h1, max(ws, 0), min(ws + POOL_K, W), yr + ow, ar + ow);
        }
        // Sixteen at a time; the last group ends at ow_in1 and may overlap the one before (writing
        // the same values again), so only rows with fewer than sixteen interior outputs go scalar.
        if (ow_in1 - ow_in0 >= 16) {
            for (; ow < ow_in1; ow += 16) pool_max16(xp, W, h0, h1, min(ow, ow_in1 - 16), yr, ar);
            ow = ow_in1;
        }
        for (; ow < OW; ++ow) {
            const int ws = ow * POOL_S - POOL_P;
            pool_max_window(xp, W, h0, h1, max(ws, 0), min(ws + POOL_K, W), yr + ow, ar + ow);
        }
    }
}

// Runs VEC8 for i = 0, 8, ... while 8 floats remain of n, then ONE for each remaining i.
#define POOL_EACH(n, VEC8, ONE)                    \
    do {                                           \
        int i = 0;                                 \
        for (; i + 8 <= (n); i += 8) VEC8;         \
        for (; i < (n); ++i) ONE;                  \
    } while (0)

// grad_x rows are written with streaming stores where the compiler has them: a normal store first
// reads each line (read for ownership), so writing grad_x would cost two transfers. The floats up to
// the next 32-byte boundary go one at a time, then whole float8s; the work-item ends with an sfence
// (streaming stores are weakly ordered on x86).
#ifdef __has_builtin
#if __has_builtin(__builtin_nontemporal_store)
#define POOL_NT 1
#endif
#endif
#ifdef POOL_NT
#define POOL_EACH_OUT(dst, n, V8, ONE)                                                          \
    do {                                                                                        \
        int i = 0;                                                                              \
        const int head = min((n), (int)(((32 - ((size_t)(dst) & 31)) & 31) / 4));              \
        for (; i < head; ++i) ONE;                                                              \
        for (; i + 8 <= (n); i += 8) {                                                          \
            const float8 pool_v = (V8);                                                         \
            __builtin_nontemporal_store(pool_v, (__global float8 *)((dst) + i));                \
        }                                                                                       \
        for (; i < (n); ++i) ONE;                                                               \
    } while (0)
#if __has_builtin(__builtin_ia32_sfence)
#define POOL_FENCE() __builtin_ia32_sfence()
#else
#define POOL_FENCE() mem_fence(CLK_GLOBAL_MEM_FENCE)
#endif
#else
#define POOL_EACH_OUT(dst, n, V8, ONE) POOL_EACH(n, ST8G(V8, (dst) + i), ONE)
#define POOL_FENCE()
#endif

inline void pool_store_rows(__global float *dst, __local const float *src, const int n) {
    POOL_EACH_OUT(dst, n, LD8L(src + i), dst[i] = src[i]);
}
inline void pool_zero_rows(__global float *dst, const int n) { POOL_EACH_OUT(dst, n, (float8)(0.0f), dst[i] = 0.0f); }
inline void pool_zero_buffer(__local float *dst, const int n) { POOL_EACH(n, ST8L((float8)(0.0f), dst + i), dst[i] = 0.0f); }
// rows[0, n) = rows[from, from + n): a forward copy, safe because it moves down.
inline void pool_shift_rows(__local float *rows, const int from, const int n) {
    POOL_EACH(n, ST8L(LD8L(rows + from + i), rows + i), rows[i] = rows[from + i]);
}

// rows: a __local buffer of POOL_K * W floats per work-group (the host passes its size).
__kernel void max_pool_backward_cpu(__global const float *grad_out, __global const float *argmax, __global float *grad_x,
                                    __local float *rows, const int planes, const int H, const int W, const int OH, const int OW) {
    const int plane = get_global_id(0);
    if (plane >= planes) return;
    __global const float *gp = grad_out + (size_t)plane * OH * OW, *ap = argmax + (size_t)plane * OH * OW;
    __global float *gx = grad_x + (size_t)plane * H * W;
    // Input rows below `first` are written; rows [first, live) are in rows[], row `first` at rows[0].
    int first = 0, live = 0;
    for (int oh = 0; oh < OH; ++oh) {
        const int hs = oh * POOL_S - POOL_P;
        const int h0 = max(hs, 0), h1 = min(hs + POOL_K, H);
        // Write out the rows above this window (buffered ones, then any no window covered), keep the rest.
        const int done = min(h0, live);
        pool_store_rows(gx + first * W, rows, (done - first) * W);
        pool_zero_rows(gx + done * W, (h0 - done) * W);
        pool_shift_rows(rows, (done - first) * W, (live - done) * W);
        first = h0;
        live = max(live, h0);
        pool_zero_buffer(rows + (live - first) * W, (h1 - live) * W);
        live = h1;
        // Scatter this output row in order; the index test is done in float (exact below 2^24).
        const float base = (float)(first * W), extent = (float)((live - first) * W);
        __global const float *gr = gp + oh * OW, *ar = ap + oh * OW;
        for (int ow = 0; ow < OW; ++ow) {
            const float r = ar[ow] - base;
            if (r >= 0.0f && r < extent) rows[(int)r] += gr[ow];
        }
    }
    pool_store_rows(gx + first * W, rows, (live - first) * W);
    pool_zero_rows(gx + live * W, (H - live) * W);
    POOL_FENCE();
}
