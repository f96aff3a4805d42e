// batchnorm.cl: BatchNorm2d forward (training and eval) and backward over NCHW float32 tensors.
// Maths (see SGEReference/BatchNorm.swift): per channel c over its M = N*H*W values,
//   training: mean = sum x / M, var = sum (x - mean)^2 / M (two passes, no E[x^2]-E[x]^2 cancellation),
//             running_mean = (1-m) running_mean + m mean, running_var = (1-m) running_var + m var M/(M-1)
//   eval:     mean, var = running statistics
//   y = gamma (x - mean) invstd + beta, invstd = 1/sqrt(var + eps)
//   backward: dbeta += sum g, dgamma += sum g xhat,
//             dx = gamma invstd / M (M g - sum g - xhat sum g xhat)   (training) or gamma invstd g (eval)
// Layout: x, y, grads are [N, C, H, W]; gamma, beta, running stats, mean, invstd are [C].
// Mapping: ONE WORK-GROUP PER CHANNEL (get_group_id(0) = c; batchnorm_forward_eval, which needs no
//   reduction, is one work-item per element instead, see there), any power-of-two local size L chosen by the
//   host from the device limits, viewed as LN x LH with LH = the host's power of two <= min(L, H*W):
//   work-item l = ln*LH + lh visits images n = ln, ln + LN, ... and positions i = lh, lh + LH, ... of the
//   plane (n, c) at (n*C + c)*HW + i. Neighbouring work-items read neighbouring addresses (coalesced on
//   GPUs, vectorisable across work-items on CPUs), there is no per-element division, and any N, H, W work.
// Local memory: L floats, reused by each tree reduction (two per kernel); every work-item reads the sum
//   after a barrier. One work-group owns a channel, so writes to [C] arrays (and the += into dgamma,
//   dbeta) are race-free without atomics. No tunable defines: the local size is chosen at launch.

// BN_RELU=1 fuses the ReLU that follows the BatchNorm (BN+ReLU in one pass): forward writes
// max(y, 0) (relu_forward's expression), backward masks grad_out where the fused output y_relu was
// not positive (relu_backward's rule) while reading it. BN_RELU=0 ignores y_relu.
#ifndef BN_RELU
#define BN_RELU 0
#endif
#if BN_RELU
#define BN_OUT(v) fmax((v), 0.0f)
#define BN_GRAD(j) (y_relu[j] > 0.0f ? grad_out[j] : 0.0f)
#else
#define BN_OUT(v) (v)
#define BN_GRAD(j) grad_out[j]
#endif

// Tree reduction of scratch[0..L) (L a power of two); returns the sum to every work-item.
inline float bn_reduce(__local float *scratch, float v) {
    const int l = get_local_id(0), L = get_local_size(0);
    scratch[l] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = L / 2; s > 0; s >>= 1) {
        if (l < s) scratch[l] += scratch[l + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float r = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);   // scratch is reused by the next reduction
    return r;
}

// Training: batch statistics; running stats updated in place; mean_out / invstd_out receive the batch
// statistics (what backward needs). Launched with exactly C work-groups, so every group has a channel
// (no early return: all work-items must reach every barrier).
__kernel void batchnorm_forward(__global const float *x, __global const float *gamma, __global const float *beta,
                                __global float *running_mean, __global float *running_var,
                                __global float *y, __global float *mean_out, __global float *invstd_out,
                                const int N, const int C, const int HW, const int LH, const float momentum, const float eps,
                                __local float *scratch) {
    const int c = get_group_id(0), l = get_local_id(0), LN = get_local_size(0) / LH;
    const int lh = l % LH, ln = l / LH;
    const int M = N * HW;
    float s = 0.0f;
    for (int n = ln; n < N; n += LN) {
        __global const float *xp = x + (size_t)(n * C + c) * HW;
        for (int i = lh; i < HW; i += LH) s += xp[i];
    }
    const float mean = bn_reduce(scratch, s) / (float)M;
    float q = 0.0f;
    for (int n = ln; n < N; n += LN) {
        __global const float *xp = x + (size_t)(n * C + c) * HW;
        for (int i = lh; i < HW; i += LH) {
            const float d = xp[i] - mean;
            q += d * d;
        }
    }
    const float var = bn_reduce(scratch, q) / (float)M;
    const float invstd = rsqrt(var + eps);
    if (l == 0) {
        mean_out[c] = mean;
        invstd_out[c] = invstd;
        const float unbiased = M > 1 ? var * (float)M / (float)(M - 1) : var;
        running_mean[c] = (1.0f - momentum) * running_mean[c] + momentum * mean;
        running_var[c] = (1.0f - momentum) * running_var[c] + momentum * unbiased;
    }
    const float a = gamma[c] * invstd, b = beta[c] - mean * a;
    for (int n = ln; n < N; n += LN) {
        const size_t base = (size_t)(n * C + c) * HW;
        for (int i = lh; i < HW; i += LH) y[base + i] = BN_OUT(x[base + i] * a + b);
    }
}

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

// dgamma, dbeta accumulate (+=); dx is overwritten.
__kernel void batchnorm_backward(__global const float *grad_out, __global const float *y_relu, __global const float *x, __global const float *gamma,
                                 __global const float *mean_in, __global const float *invstd_in,
                                 __global float *grad_x, __global float *grad_gamma, __global float *grad_beta,
                                 const int N, const int C, const int HW, const int LH, const int training,
                                 __local float *scratch) {
    const int c = get_group_id(0), l = get_local_id(0), LN = get_local_size(0) / LH;
    const int lh = l % LH, ln = l / LH;
    const int M = N * HW;
    const float mean = mean_in[c], invstd = invstd_in[c];
    float sg = 0.0f, sgx = 0.0f;
    for (int n = ln; n < N; n += LN) {
        const size_t base = (size_t)(n * C + c) * HW;
        for (int i = lh; i < HW; i += LH) {
            const float g = BN_GRAD(base + i);
            sg += g;
            sgx += g * (x[base + i] - mean);
        }
    }
    sg = bn_reduce(scratch, sg);
    sgx = bn_reduce(scratch, sgx) * invstd;   // sum g * xhat
    if (l == 0) {
        grad_gamma[c] += sgx;
        grad_beta[c] += sg;
    }
    const float k = gamma[c] * invstd;
    const float mg = sg / (float)M, mgx = sgx / (float)M;
    for (int n = ln; n < N; n += LN) {
        const size_t base = (size_t)(n * C + c) * HW;
        for (int i = lh; i < HW; i += LH) {
            const float g = BN_GRAD(base + i);
            grad_x[base + i] = training ? k * (g - mg - (x[base + i] - mean) * invstd * mgx) : k * g;
        }
    }
}
