// conv.cl: the small kernels around CLBlast's im2col/col2im/GEMM for Conv2d and Linear:
//   bias_add:  out[n,k,p] += bias[k]                      (forward bias)
//   bias_grad: grad_bias[k] += sum_{n,p} grad_out[n,k,p]  (bias gradient, accumulates like every
//              parameter gradient)
// Layout: out / grad_out are [N, K, P] row-major with P = OH*OW for a conv (NCHW) and P = 1 for a
// Linear layer ([N, out]).
// Mapping: bias_add uses one work-item per output element (bound-checked; the host rounds the
// global size up). bias_grad uses one work-group of WG work-items per channel k: each work-item
// sums a strided slice of the N*P values of that channel, then the group reduces the WG partial
// sums in local memory (tree reduction, WG a power of two) and work-item 0 adds the total to
// grad_bias[k]. No float atomics are needed because one group owns one channel.
// The wide layout's column kernels come in two forms with identical results: per element
// (im2col_wide, col2im_wide; GPUs) and per contiguous block (im2col_rows, col2im_rows; CPU drivers,
// one work-item walking rows with vector moves). Geometry (KH, KW, SH, SW, PH, PW, DH, DW) is
// compiled in as defines.
// Tunables: WG (work-group size of bias_grad, a power of two; the host picks it from the device's
// and the kernel's maximum work-group size).

#ifndef WG
#define WG 256
#endif

__kernel void bias_add(__global float *out, __global const float *bias, const int channels, const int inner, const int total) {
    int i = get_global_id(0);
    if (i < total) out[i] += bias[(i / inner) % channels];
}

__kernel void bias_grad(__global const float *grad_out, __global float *grad_bias, const int batch, const int channels, const int inner) {
    __local float partial[WG];
    const int k = get_group_id(0);
    const int lid = get_local_id(0);
    const int per_channel = batch * inner;
    float s = 0.0f;
    for (int j = lid; j < per_channel; j += WG) {
        int n = j / inner;
        int p = j - n * inner;
        s += grad_out[(n * channels + k) * inner + p];
    }
    partial[lid] = s;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s2 = WG / 2; s2 > 0; s2 >>= 1) {
        if (lid < s2) partial[lid] += partial[lid + s2];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0 && k < channels) grad_bias[k] += partial[0];
}

// ---- The "wide" layout (ConvAlgorithm.wide): a chunk of B images as ONE column matrix
// cols[r][b*P + p] (r = (c*KH + i)*KW + j, p = oh*OW + ow, row length BP = B*P), so each direction of
// a convolution is one GEMM per chunk instead of one per image, and each helper below is one launch.
// Geometry is compile-time (-D KH KW SH SW PH PW DH DW) so index arithmetic folds to constants.
// Mapping: 3-D ranges with dim 0 along the contiguous output row (ow or p), so consecutive
// work-items touch consecutive addresses (vector lanes on CPU drivers, coalesced on GPUs).
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

// cols = im2col of images [n0, n0+B) of x [N, C, H, W]; range (OW, OH, B*C).
__kernel void im2col_wide(__global const float *x, __global float *cols, const int n0, const int batch, const int channels,
                          const int height, const int width, const int out_h, const int out_w) {
    const int ow = get_global_id(0), oh = get_global_id(1), bc = get_global_id(2);
    if (ow >= out_w || oh >= out_h || bc >= batch * channels) return;
    const int b = bc / channels, c = bc - b * channels;
    const size_t BP = (size_t)batch * out_h * out_w;
    __global const float *img = x + ((size_t)(n0 + b) * channels + c) * height * width;
    __global float *dst = cols + (size_t)c * KH * KW * BP + (size_t)b * out_h * out_w + oh * out_w + ow;
    for (int i = 0; i < KH; i++) {
        const int ih = oh * SH - PH + i * DH;
        const bool row_ok = ih >= 0 && ih < height;
        for (int j = 0; j < KW; j++) {
            const int iw = ow * SW - PW + j * DW;
            dst[(i * KW + j) * BP] = (row_ok && iw >= 0 && iw < width) ? img[ih * width + iw] : 0.0f;
        }
    }
}

// Output columns ow in [lo, hi) of tap column j read image column iw = ow*SW + j*DW - PW inside
// [0, width); the others fall on the padding. Returns (lo, hi).
inline int2 tap_column_range(const int j, const int width, const int out_w) {
    const int off = j * DW - PW;
    const int lo = off >= 0 ? 0 : min(out_w, (-off + SW - 1) / SW);
    const int hi = max(lo, min(out_w, width - off > 0 ? (width - off + SW - 1) / SW : 0));
    return (int2)(lo, hi);
}

// The same columns as im2col_wide, for CPU drivers: one work-item per (tap, image, channel) writes
// that tap's whole OH x OW block, which is contiguous in cols, row by row; within a row the taps
// that fall outside the image are zeros and the rest is a strided (stride 1: contiguous) copy of
// one image row, so the compiler emits vector moves. Range (KH*KW, B*C), work-group size 1: on PoCL
// a work-group is a loop on one core. The per-element kernel above (whose work-items write 9 values
// BP floats apart) took 31% of a training run's CPU time in a `perf` profile; this one cut the 3x3
// 64->64 forward at 8x56x56 from 27.4 to 18.2 ms (`sge bench conv`).
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void im2col_rows(__global const float *x, __global float *cols, const int n0, const int batch, const int channels,
                 const int height, const int width, const int out_h, const int out_w) {
    const int tap = get_global_id(0), bc = get_global_id(1);
    if (tap >= KH * KW || bc >= batch * channels) return;
    const int b = bc / channels, c = bc - b * channels, i = tap / KW, j = tap - i * KW;
    const size_t BP = (size_t)batch * out_h * out_w;
    __global const float *img = x + ((size_t)(n0 + b) * channels + c) * height * width;
    __global float *dst = cols + ((size_t)c * KH * KW + tap) * BP + (size_t)b * out_h * out_w;
    const int off = j * DW - PW;
    const int2 range = tap_column_range(j, width, out_w);
    const int lo = range.x, hi = range.y;
    for (int oh = 0; oh < out_h; ++oh, dst += out_w) {
        const int ih = oh * SH - PH + i * DH;
        if (ih < 0 || ih >= height) {
            for (int ow = 0; ow < out_w; ++ow) dst[ow] = 0.0f;
            continue;
        }
        __global const float *src = img + ih * width + off;
        for (int ow = 0; ow < lo; ++ow) dst[ow] = 0.0f;
        if (SW == 1) {
            for (int ow = lo; ow < hi; ++ow) dst[ow] = src[ow];
        } else {
            for (int ow = lo; ow < hi; ++ow) dst[ow] = src[ow * SW];
        }
        for (int ow = hi; ow < out_w; ++ow) dst[ow] = 0.0f;
    }
}

// gx[n0+b, c, h, w] = sum over taps (i, j) landing on (h, w) of cols[r][b*P + oh*OW + ow] (cols
// starting `col_offset` floats in); a gather that overwrites gx (no zeroing, no atomics). Range
// (W, H, B*C). With batch 1 it is also col2im of one image's [C·KH·KW][P] matrix: the per-image
// algorithms use it where CLBlast 1.5.3's col2im is wrong (stride and dilation sharing a factor > 1
// on an axis: wrong values and out-of-bounds writes, found by `sge validate`).
__kernel void col2im_wide(__global const float *cols, const int col_offset, __global float *gx, const int n0, const int batch,
                          const int channels, const int height, const int width, const int out_h, const int out_w) {
    const int w = get_global_id(0), h = get_global_id(1), bc = get_global_id(2);
    if (w >= width || h >= height || bc >= batch * channels) return;
    const int b = bc / channels, c = bc - b * channels;
    const size_t BP = (size_t)batch * out_h * out_w;
    __global const float *src = cols + col_offset + (size_t)c * KH * KW * BP + (size_t)b * out_h * out_w;
    float s = 0.0f;
    for (int i = 0; i < KH; i++) {
        const int th = h + PH - i * DH;
        if (th < 0 || th % SH != 0) continue;
        const int oh = th / SH;
        if (oh >= out_h) continue;
        for (int j = 0; j < KW; j++) {
            const int tw = w + PW - j * DW;
            if (tw < 0 || tw % SW != 0) continue;
            const int ow = tw / SW;
            if (ow >= out_w) continue;
            s += src[(i * KW + j) * BP + oh * out_w + ow];
        }
    }
    gx[(((size_t)(n0 + b) * channels + c) * height + h) * width + w] = s;
}

// The same gather as col2im_wide, for CPU drivers: one work-item per (image, channel) builds that
// channel's H x W plane of gx, adding each tap's OH x OW block of cols (contiguous in cols) into it
// in tap order, so every pixel sums its taps in the same order as col2im_wide (identical results)
// while the plane stays in cache and cols is read as contiguous rows. Range (B*C), work-group size 1.
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void col2im_rows(__global const float *cols, const int col_offset, __global float *gx, const int n0, const int batch,
                 const int channels, const int height, const int width, const int out_h, const int out_w) {
    const int bc = get_global_id(0);
    if (bc >= batch * channels) return;
    const int b = bc / channels, c = bc - b * channels;
    const size_t BP = (size_t)batch * out_h * out_w;
    __global const float *src = cols + col_offset + (size_t)c * KH * KW * BP + (size_t)b * out_h * out_w;
    __global float *plane = gx + ((size_t)(n0 + b) * channels + c) * height * width;
    for (int e = 0; e < height * width; ++e) plane[e] = 0.0f;
    for (int i = 0; i < KH; ++i) {
        for (int j = 0; j < KW; ++j) {
            __global const float *blk = src + (size_t)(i * KW + j) * BP;
            const int off = j * DW - PW;
            const int2 range = tap_column_range(j, width, out_w);
            const int lo = range.x, hi = range.y;
            for (int oh = 0; oh < out_h; ++oh) {
                const int ih = oh * SH - PH + i * DH;
                if (ih < 0 || ih >= height) continue;
                __global float *row = plane + ih * width + off;
                __global const float *crow = blk + oh * out_w;
                if (SW == 1) {
                    for (int ow = lo; ow < hi; ++ow) row[ow] += crow[ow];
                } else {
                    for (int ow = lo; ow < hi; ++ow) row[ow * SW] += crow[ow];
                }
            }
        }
    }
}

// out[n0+b, k, p] = wide[k][b*P + p] (+ bias[k]); range (P, B, K).
__kernel void wide_to_nchw(__global const float *wide, __global float *out, __global const float *bias, const int has_bias,
                           const int n0, const int batch, const int channels, const int plane) {
    const int p = get_global_id(0), b = get_global_id(1), k = get_global_id(2);
    if (p >= plane || b >= batch || k >= channels) return;
    float v = wide[((size_t)k * batch + b) * plane + p];
    if (has_bias) v += bias[k];
    out[((size_t)(n0 + b) * channels + k) * plane + p] = v;
}

// wide[k][b*P + p] = src[n0+b, k, p]; range (P, B, K).
__kernel void nchw_to_wide(__global const float *src, __global float *wide, const int n0, const int batch, const int channels,
                           const int plane) {
    const int p = get_global_id(0), b = get_global_id(1), k = get_global_id(2);
    if (p >= plane || b >= batch || k >= channels) return;
    wide[((size_t)k * batch + b) * plane + p] = src[((size_t)(n0 + b) * channels + k) * plane + p];
}

// acc[i] += sum_b partials[b*count + i]: folds per-image partial weight gradients (computed as one
// batched GEMM for parallelism) into the accumulated gradient. One work-item per element.
__kernel void accumulate_partials(__global const float *partials, __global float *acc, const int count, const int batches) {
    const int i = get_global_id(0);
    if (i >= count) return;
    float s = 0.0f;
    for (int b = 0; b < batches; b++) s += partials[(size_t)b * count + i];
    acc[i] += s;
}
