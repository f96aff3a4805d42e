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

// ---- "wide" column layout: a chunk of B images as ONE (C*KH*KW) x (B*P) matrix, so a single
// GEMM covers the whole chunk instead of B GEMMs with N = P.
// cols[r, b*P + p] with r = (c*KH + i)*KW + j and p = oh*OW + ow; ld = B*P.
// Mapping: one work-item per element of the destination (bound-checked). No local memory.

// cols = im2col of images [n0, n0+B) of x [N, C, H, W] (zero outside the image).
// 2-D range: dim 0 = ow (consecutive work-items write consecutive columns), dim 1 = (r, b, oh)
// flattened, so the per-element index arithmetic is one division chain per row of outputs.
__kernel void im2col_wide(__global const float *x, __global float *cols, const int n0, const int batch,
                          const int channels, const int height, const int width, const int kh, const int kw,
                          const int out_h, const int out_w, const int stride_h, const int stride_w,
                          const int pad_h, const int pad_w, const int dil_h, const int dil_w) {
    const int ow = get_global_id(0);
    const int row = get_global_id(1);  // ((r * batch) + b) * out_h + oh
    if (ow >= out_w || row >= channels * kh * kw * batch * out_h) return;
    const int oh = row % out_h;
    const int rb = row / out_h;
    const int b = rb % batch, r = rb / batch;
    const int j = r % kw, i = (r / kw) % kh, c = r / (kw * kh);
    const int ih = oh * stride_h - pad_h + i * dil_h;
    const int iw = ow * stride_w - pad_w + j * dil_w;
    float v = 0.0f;
    if (ih >= 0 && ih < height && iw >= 0 && iw < width) v = x[(((n0 + b) * channels + c) * height + ih) * width + iw];
    cols[row * out_w + ow] = v;  // = r*(B*P) + b*P + oh*OW + ow
}

// out[n0+b, k, p] = wide[k, b*P + p] (+ bias[k] when has_bias): the GEMM result back to NCHW.
__kernel void wide_to_nchw(__global const float *wide, __global float *out, __global const float *bias, const int has_bias,
                           const int n0, const int batch, const int channels, const int P) {
    const int idx = get_global_id(0);  // over [B, K, P] of the destination chunk
    if (idx >= batch * channels * P) return;
    const int p = idx % P, k = (idx / P) % channels, b = idx / (P * channels);
    float v = wide[k * (batch * P) + b * P + p];
    if (has_bias) v += bias[k];
    out[n0 * channels * P + idx] = v;
}

// wide[k, b*P + p] = src[n0+b, k, p]: a chunk of an NCHW gradient as a K x (B*P) matrix.
__kernel void nchw_to_wide(__global const float *src, __global float *wide, const int n0, const int batch,
                           const int channels, const int P) {
    const int idx = get_global_id(0);  // over [K, B*P] of the destination
    if (idx >= batch * channels * P) return;
    const int BP = batch * P;
    const int k = idx / BP, col = idx - k * BP;
    const int b = col / P, p = col - b * P;
    wide[idx] = src[((n0 + b) * channels + k) * P + p];
}

// col2im as a gather (no atomics, no zeroing): gx[n0+b, c, h, w] = sum over the kernel taps (i, j)
// whose output position (oh, ow) lands on (h, w) of cols[(c*KH + i)*KW + j, b*P + oh*OW + ow].
__kernel void col2im_wide(__global const float *cols, __global float *gx, const int n0, const int batch,
                          const int channels, const int height, const int width, const int kh, const int kw,
                          const int out_h, const int out_w, const int stride_h, const int stride_w,
                          const int pad_h, const int pad_w, const int dil_h, const int dil_w) {
    const int idx = get_global_id(0);  // over [B, C, H, W] of the chunk
    if (idx >= batch * channels * height * width) return;
    const int w = idx % width, h = (idx / width) % height;
    const int c = (idx / (width * height)) % channels, b = idx / (width * height * channels);
    const int P = out_h * out_w, BP = batch * P;
    float s = 0.0f;
    for (int i = 0; i < kh; i++) {
        const int th = h + pad_h - i * dil_h;
        if (th < 0 || th % stride_h != 0) continue;
        const int oh = th / stride_h;
        if (oh >= out_h) continue;
        for (int j = 0; j < kw; j++) {
            const int tw = w + pad_w - j * dil_w;
            if (tw < 0 || tw % stride_w != 0) continue;
            const int ow = tw / stride_w;
            if (ow >= out_w) continue;
            s += cols[((c * kh + i) * kw + j) * BP + b * P + oh * out_w + ow];
        }
    }
    gx[n0 * channels * height * width + idx] = s;
}
