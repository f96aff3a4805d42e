// pool.cl: max, average and global-average pooling over NCHW float32 tensors, forward and backward.
// Maths (see SGEReference/Pool.swift), PyTorch semantics with ceil_mode = False:
//   OH = (H + 2P - K) / S + 1; window(oh) = rows oh*S - P ..< oh*S - P + K (columns likewise)
//   max: padding is -inf, the first maximum in row-major order wins (NaN wins); argmax = ih*W + iw,
//        stored as float (exact for planes below 2^24 elements)
//   avg: count_include_pad = True, divisor (hend - hstart)(wend - wstart) with hend = min(hstart + K, H + P)
//   global avg: [N, C, H, W] -> [N, C] means
// Mapping: forward kernels use one work-item per OUTPUT element; backward kernels GATHER with one
//   work-item per INPUT element, visiting the output windows that contain it, so no two work-items write
//   the same address and no atomics are needed. Global average forward: one work-item per (n, c) plane.
// No local memory. Kernels bound-check (the host rounds the global size up to the work-group size).

// Output windows along one axis that contain input position i: o in [lo, hi].
inline int pool_first_window(int i, int K, int S, int P) {
    const int t = i + P - K + 1;   // o*S >= t
    return t <= 0 ? 0 : (t + S - 1) / S;
}
inline int pool_last_window(int i, int S, int P, int O) { return min((i + P) / S, O - 1); }

__kernel void max_pool_forward(__global const float *x, __global float *y, __global float *argmax,
                               const int planes, const int H, const int W, const int OH, const int OW,
                               const int K, const int S, const int P) {
    const int o = get_global_id(0);
    if (o >= planes * OH * OW) return;
    const int ow = o % OW, oh = (o / OW) % OH, plane = o / (OW * OH);
    const int h0 = max(oh * S - P, 0), h1 = min(oh * S - P + K, H);
    const int w0 = max(ow * S - P, 0), w1 = min(ow * S - P + K, W);
    __global const float *xp = x + (size_t)plane * H * W;
    float best = -INFINITY;
    int best_index = h0 * W + w0;
    for (int ih = h0; ih < h1; ++ih)
        for (int iw = w0; iw < w1; ++iw) {
            const float v = xp[ih * W + iw];
            if (v > best || isnan(v)) { best = v; best_index = ih * W + iw; }
        }
    y[o] = best;
    argmax[o] = (float)best_index;
}

__kernel void max_pool_backward(__global const float *grad_out, __global const float *argmax, __global float *grad_x,
                                const int planes, const int H, const int W, const int OH, const int OW,
                                const int K, const int S, const int P) {
    const int i = get_global_id(0);
    if (i >= planes * H * W) return;
    const int iw = i % W, ih = (i / W) % H, plane = i / (W * H);
    const int here = ih * W + iw;
    const int oh0 = pool_first_window(ih, K, S, P), oh1 = pool_last_window(ih, S, P, OH);
    const int ow0 = pool_first_window(iw, K, S, P), ow1 = pool_last_window(iw, S, P, OW);
    const size_t base = (size_t)plane * OH * OW;
    float g = 0.0f;
    for (int oh = oh0; oh <= oh1; ++oh)
        for (int ow = ow0; ow <= ow1; ++ow) {
            const size_t o = base + oh * OW + ow;
            if ((int)argmax[o] == here) g += grad_out[o];
        }
    grad_x[i] = g;
}

__kernel void avg_pool_forward(__global const float *x, __global float *y,
                               const int planes, const int H, const int W, const int OH, const int OW,
                               const int K, const int S, const int P) {
    const int o = get_global_id(0);
    if (o >= planes * OH * OW) return;
    const int ow = o % OW, oh = (o / OW) % OH, plane = o / (OW * OH);
    const int hs = oh * S - P, ws = ow * S - P;
    const int he = min(hs + K, H + P), we = min(ws + K, W + P);
    const float divisor = (float)((he - hs) * (we - ws));
    __global const float *xp = x + (size_t)plane * H * W;
    float s = 0.0f;
    for (int ih = max(hs, 0); ih < min(he, H); ++ih)
        for (int iw = max(ws, 0); iw < min(we, W); ++iw) s += xp[ih * W + iw];
    y[o] = s / divisor;
}

__kernel void avg_pool_backward(__global const float *grad_out, __global float *grad_x,
                                const int planes, const int H, const int W, const int OH, const int OW,
                                const int K, const int S, const int P) {
    const int i = get_global_id(0);
    if (i >= planes * H * W) return;
    const int iw = i % W, ih = (i / W) % H, plane = i / (W * H);
    const int oh0 = pool_first_window(ih, K, S, P), oh1 = pool_last_window(ih, S, P, OH);
    const int ow0 = pool_first_window(iw, K, S, P), ow1 = pool_last_window(iw, S, P, OW);
    __global const float *gp = grad_out + (size_t)plane * OH * OW;
    float g = 0.0f;
    for (int oh = oh0; oh <= oh1; ++oh) {
        const int hs = oh * S - P, he = min(hs + K, H + P);
        for (int ow = ow0; ow <= ow1; ++ow) {
            const int ws = ow * S - P, we = min(ws + K, W + P);
            g += gp[oh * OW + ow] / (float)((he - hs) * (we - ws));
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
