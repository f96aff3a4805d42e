// pool.cl: max, average and global-average pooling over NCHW float32 tensors, forward and backward.
// Maths (see SGEReference/Pool.swift), PyTorch semantics with ceil_mode = False:
//   OH = (H + 2P - K) / S + 1; window(oh) = rows oh*S - P ..< oh*S - P + K (columns likewise)
//   max: padding is -inf, the first maximum in row-major order wins (NaN wins); argmax = ih*W + iw,
//        stored as float (exact for planes below 2^24 elements)
//   avg: count_include_pad = True, divisor (hend - hstart)(wend - wstart) with hend = min(hstart + POOL_K, H + POOL_P)
//   global avg: [N, C, H, W] -> [N, C] means
// Mapping: forward kernels use one work-item per OUTPUT element, a 3-D range (ow, oh, plane); backward
//   kernels GATHER with one work-item per INPUT element, (iw, ih, plane), visiting the at most
//   ceil(K/S)^2 output windows that contain it, so no two work-items write the same address and no
//   atomics are needed. Global average forward: one work-item per (n, c) plane; backward per element.
//   CPU drivers run pool_cpu.cl's max-pooling kernels instead (one work-item per plane).
// Geometry as compile-time defines POOL_K, POOL_S, POOL_P (kernel, stride, padding; one program per
// geometry, cached), so window bounds divide by constants and the window loops unroll.
// No local memory. Kernels bound-check (the host rounds the global size up to the work-group size).

#ifndef POOL_K
#define POOL_K 3
#endif
#ifndef POOL_S
#define POOL_S 2
#endif
#ifndef POOL_P
#define POOL_P 1
#endif

// Output windows along one axis that contain input position i: o in [lo, hi].
inline int pool_first_window(int i) {
    const int t = i + POOL_P - POOL_K + 1;   // o*S >= t
    return t <= 0 ? 0 : (t + POOL_S - 1) / POOL_S;
}
inline int pool_last_window(int i, int O) { return min((i + POOL_P) / POOL_S, O - 1); }
// Most windows along one axis that contain an input position: a constant trip count for the gathers.
#define POOL_SPAN ((POOL_K + POOL_S - 1) / POOL_S)

// Max over input rows [h0, h1) and columns [w0, w1) of plane xp, first maximum in row-major order,
// NaN wins; the result goes to *y and its in-plane index to *argmax.
inline void pool_max_window(__global const float *xp, const int W, const int h0, const int h1, const int w0, const int w1,
                            __global float *y, __global float *argmax) {
    float best = -INFINITY;
    int best_index = h0 * W + w0;
    // Selects, not branches; `v != v` tests NaN (measured ~2x faster than isnan() on PoCL).
    for (int ih = h0; ih < h1; ++ih)
        for (int iw = w0; iw < w1; ++iw) {
            const float v = xp[ih * W + iw];
            const int better = v > best || v != v;
            best = better ? v : best;
            best_index = better ? ih * W + iw : best_index;
        }
    *y = best;
    *argmax = (float)best_index;
}

__kernel void max_pool_forward(__global const float *x, __global float *y, __global float *argmax,
                               const int planes, const int H, const int W, const int OH, const int OW) {
    const int ow = get_global_id(0), oh = get_global_id(1), plane = get_global_id(2);
    if (ow >= OW || oh >= OH || plane >= planes) return;
    const size_t o = ((size_t)plane * OH + oh) * OW + ow;
    const int hs = oh * POOL_S - POOL_P, ws = ow * POOL_S - POOL_P;
    __global const float *xp = x + (size_t)plane * H * W;
    const int h0 = max(hs, 0), h1 = min(hs + POOL_K, H), w0 = max(ws, 0), w1 = min(ws + POOL_K, W);
    pool_max_window(xp, W, h0, h1, w0, w1, y + o, argmax + o);
}

__kernel void max_pool_backward(__global const float *grad_out, __global const float *argmax, __global float *grad_x,
                                const int planes, const int H, const int W, const int OH, const int OW) {
    const int iw = get_global_id(0), ih = get_global_id(1), plane = get_global_id(2);
    if (iw >= W || ih >= H || plane >= planes) return;
    const size_t i = ((size_t)plane * H + ih) * W + iw;
    const int here = ih * W + iw;
    const int oh0 = pool_first_window(ih), oh1 = pool_last_window(ih, OH);
    const int ow0 = pool_first_window(iw), ow1 = pool_last_window(iw, OW);
    const size_t base = (size_t)plane * OH * OW;
    float g = 0.0f;
    for (int dh = 0; dh < POOL_SPAN; ++dh) {
        const int oh = oh0 + dh;
        for (int dw = 0; dw < POOL_SPAN; ++dw) {
            const int ow = ow0 + dw;
            // Always load from a valid address (window (0, 0) when out of range) and select: no branches.
            const int ok = oh <= oh1 && ow <= ow1;
            const size_t o = ok ? base + oh * OW + ow : base;
            const float a = argmax[o], go = grad_out[o];
            g += (ok && a == (float)here) ? go : 0.0f;
        }
    }
    grad_x[i] = g;
}

__kernel void avg_pool_forward(__global const float *x, __global float *y,
                               const int planes, const int H, const int W, const int OH, const int OW) {
    const int ow = get_global_id(0), oh = get_global_id(1), plane = get_global_id(2);
    if (ow >= OW || oh >= OH || plane >= planes) return;
    const size_t o = ((size_t)plane * OH + oh) * OW + ow;
    const int hs = oh * POOL_S - POOL_P, ws = ow * POOL_S - POOL_P;
    const int he = min(hs + POOL_K, H + POOL_P), we = min(ws + POOL_K, W + POOL_P);
    const float divisor = (float)((he - hs) * (we - ws));
    __global const float *xp = x + (size_t)plane * H * W;
    float s = 0.0f;
    for (int ih = max(hs, 0); ih < min(he, H); ++ih)
        for (int iw = max(ws, 0); iw < min(we, W); ++iw) s += xp[ih * W + iw];
    y[o] = s / divisor;
}

__kernel void avg_pool_backward(__global const float *grad_out, __global float *grad_x,
                                const int planes, const int H, const int W, const int OH, const int OW) {
    const int iw = get_global_id(0), ih = get_global_id(1), plane = get_global_id(2);
    if (iw >= W || ih >= H || plane >= planes) return;
    const size_t i = ((size_t)plane * H + ih) * W + iw;
    const int oh0 = pool_first_window(ih), oh1 = pool_last_window(ih, OH);
    const int ow0 = pool_first_window(iw), ow1 = pool_last_window(iw, OW);
    __global const float *gp = grad_out + (size_t)plane * OH * OW;
    float g = 0.0f;
    for (int dh = 0; dh < POOL_SPAN; ++dh) {
        const int oh = oh0 + dh;
        const int hs = oh * POOL_S - POOL_P, he = min(hs + POOL_K, H + POOL_P);
        for (int dw = 0; dw < POOL_SPAN; ++dw) {
            const int ow = ow0 + dw;
            const int ws = ow * POOL_S - POOL_P, we = min(ws + POOL_K, W + POOL_P);
            if (oh <= oh1 && ow <= ow1) g += gp[oh * OW + ow] / (float)((he - hs) * (we - ws));
        }
    }
    grad_x[i] = g;
}

__kernel void global_avg_pool_forward(__global const float *x, __global float *y, const int planes, const int HW) {
    const int p = get_global_id(0);
    if (p >= planes) return;
    __global const float *xp = x + (size_t)p * HW;
    float s = 0.0f;
    for (int i = 0; i < HW; ++i) s += xp[i];
    y[p] = s / (float)HW;
}

__kernel void global_avg_pool_backward(__global const float *grad_out, __global float *grad_x, const int planes, const int HW) {
    const int i = get_global_id(0);
    if (i >= planes * HW) return;
    grad_x[i] = grad_out[i / HW] / (float)HW;
}
