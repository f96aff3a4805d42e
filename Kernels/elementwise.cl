// Elementwise kernels on flat float32 arrays: fill, scale, axpy, add, ReLU and a float4 copy used
// to measure the device's copy bandwidth (its streaming-store form is in bandwidth.cl).
// Layout: any contiguous array of n floats. Mapping: one work-item per element (per float4 for
// copy_float4); kernels bound-check because the host rounds the global size up to the work-group size.
// No local memory.

__kernel void fill(__global float *x, const int n, const float value) {
    int i = get_global_id(0);
    if (i < n) x[i] = value;
}

// x = alpha * x
__kernel void scale(__global float *x, const int n, const float alpha) {
    int i = get_global_id(0);
    if (i < n) x[i] *= alpha;
}

// y = alpha * x + beta * y
__kernel void axpby(__global const float *x, __global float *y, const int n, const float alpha, const float beta) {
    int i = get_global_id(0);
    if (i < n) y[i] = alpha * x[i] + beta * y[i];
}

// out = a + b  (residual add; out may alias a or b)
__kernel void add(__global const float *a, __global const float *b, __global float *out, const int n) {
    int i = get_global_id(0);
    if (i < n) out[i] = a[i] + b[i];
}

// out = max(x, 0)
__kernel void relu_forward(__global const float *x, __global float *out, const int n) {
    int i = get_global_id(0);
    if (i < n) out[i] = fmax(x[i], 0.0f);
}

// out = max(a + b, 0): a residual block's add and its final ReLU in one pass (same rounding as add
// then relu_forward).
__kernel void add_relu(__global const float *a, __global const float *b, __global float *out, const int n) {
    int i = get_global_id(0);
    if (i < n) out[i] = fmax(a[i] + b[i], 0.0f);
}

// grad_x = grad_out where the forward output was positive, else 0 (PyTorch's convention at 0).
__kernel void relu_backward(__global const float *out, __global const float *grad_out, __global float *grad_x, const int n) {
    int i = get_global_id(0);
    if (i < n) grad_x[i] = out[i] > 0.0f ? grad_out[i] : 0.0f;
}

// dst = src, n4 float4s: the reference point for bandwidth (1 read + 1 write per element).
__kernel void copy_float4(__global const float4 *src, __global float4 *dst, const int n4) {
    int i = get_global_id(0);
    if (i < n4) dst[i] = src[i];
}
