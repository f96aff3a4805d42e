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
