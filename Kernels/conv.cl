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

// col2im as a gather, for geometries where CLBlast 1.5.3's col2im is wrong (stride and dilation
// with a common factor > 1 on the same axis: it writes wrong values and out of bounds).
// cols holds `batch` images' column matrices [C*KH*KW][OH*OW] back to back (image b at b*CKK*P);
// gx[n0+b, c, h, w] = sum over taps (i, j) whose output position lands on (h, w). Overwrites gx
// (no zeroing, no atomics). Mapping: one work-item per input element of the chunk.
__kernel void col2im_gather(__global const float *cols, __global float *gx, const int n0, const int batch,
                            const int channels, const int height, const int width, const int kh, const int kw,
                            const int out_h, const int out_w, const int stride_h, const int stride_w,
                            const int pad_h, const int pad_w, const int dil_h, const int dil_w) {
    const int idx = get_global_id(0);
    if (idx >= batch * channels * height * width) return;
    const int w = idx % width, h = (idx / width) % height;
    const int c = (idx / (width * height)) % channels, b = idx / (width * height * channels);
    const int P = out_h * out_w;
    __global const float *col = cols + (size_t)b * channels * kh * kw * P;
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
            s += col[((c * kh + i) * kw + j) * P + oh * out_w + ow];
        }
    }
    gx[(size_t)n0 * channels * height * width + idx] = s;
}
