// batchnorm.cl: BatchNorm2d eval-mode forward (any device); the maths and BN_RELU are in
// batchnorm_prelude.cl. Training forward and backward: batchnorm_gpu.cl (GPUs), batchnorm_cpu.cl
// (CPU drivers), chosen by OpenCLBackend.batchNormVariant.

// Eval: the running statistics, no reduction, so one work-item per ELEMENT (not per channel): a 2-D range
// (position i in the plane, plane n*C + c). The work-item at (0, c) also writes mean_out[c], invstd_out[c].
__kernel void batchnorm_forward_eval(__global const float *x, __global const float *gamma, __global const float *beta,
                                     __global const float *running_mean, __global const float *running_var,
                                     __global float *y, __global float *mean_out, __global float *invstd_out,
                                     const int N, const int C, const int HW, const float eps) {
    const int i = get_global_id(0), plane = get_global_id(1);
    if (i >= HW || plane >= N * C) return;
    const int c = plane % C;
    const float mean = running_mean[c], invstd = rsqrt(running_var[c] + eps);
    const size_t j = (size_t)plane * HW + i;
    y[j] = BN_OUT(gamma[c] * (x[j] - mean) * invstd + beta[c]);
    if (plane < C && i == 0) {
        mean_out[c] = mean;
        invstd_out[c] = invstd;
    }
}
