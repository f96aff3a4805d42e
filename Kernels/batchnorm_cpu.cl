// batchnorm_cpu.cl: BatchNorm2d training forward and backward for CPU drivers (maths and BN_RELU in
// batchnorm_prelude.cl). Built only where they run: it uses a variadic macro, which OpenCL C 1.2
// compilers such as NVIDIA's reject.

// ---- CPU-driver variant (PoCL and other non-GPU devices; OpenCLBackend.batchNormVariant .cpu). A work-group
// with barriers runs as a loop on one core there, so instead: work-groups of ONE work-item, each owning
// a contiguous slice of one channel's M = N*HW values (flattened index j = n*HW + i, the plane (n, c) at
// (n*C + c)*HW), walked plane segment by plane segment with float8 vectors (unaligned loads/stores) and
// scalar tails, partial sums in registers. The host picks S slices per channel (Ops/BatchNorm.swift):
//   S == 1: batchnorm_forward_cpu / batchnorm_backward_cpu, one launch of C work-items doing every pass
//           over its channel (the channel's data stays in the core's cache between passes);
//   S > 1 (few channels): *_partial (C*S work-items) writes per-slice partials to a [C, S, 2] buffer,
//           then *_apply (C*S work-items) combines its channel's S partials in slice order (every
//           work-item of a channel computes the same values; slice 0 writes the [C] outputs) and writes
//           its slice. Two launches.
// Forward statistics: per slice, sum then the sum of squares centred on the slice mean (two passes);
// slices are combined with Chan et al.'s pairwise formula M2 = sum_k (M2_k + n_k (mean_k - mean)^2),
// which has no E[x^2]-E[x]^2 cancellation. With S == 1 that is exactly the two-pass variance.
// Fused (BN_RELU) and unfused programs run the same arithmetic in the same order, so the fused results
// equal the unfused ones followed by relu bit for bit. Plain stores: the next op reads the output
// straight away, from cache where it fits, which streaming stores would forfeit.
// Measured on PoCL (2-core AVX-512 Xeon, shared, noisy), work-group-per-channel kernels -> these:
// `sge bench --quick` 8x64x56x56 forward 5.0-11 -> 0.45-0.92 ms, backward 5.4-8.4 -> 0.52-0.93 ms;
// `sge bench step` (small model, b128, 9 calls each) forward 29-31 -> 5.9-6.1 ms, backward 69-74 -> 8.6-9.7 ms.
#ifdef __clang__
typedef float bn_float8u __attribute__((ext_vector_type(8), aligned(4)));
#define BN_LD8(p) (*(__global const bn_float8u *)(p))
#define BN_ST8(v, p) (*(__global bn_float8u *)(p) = (v))
#else
#define BN_LD8(p) vload8(0, p)
#define BN_ST8(v, p) vstore8(v, 0, p)
#endif
#if BN_RELU
#define BN_GRAD8(j) select((float8)(0.0f), BN_LD8(grad_out + (j)), BN_LD8(y_relu + (j)) > 0.0f)
#else
#define BN_GRAD8(j) BN_LD8(grad_out + (j))
#endif

inline float bn_hsum8(const float8 v) {
    const float4 a = v.lo + v.hi;
    const float2 b = a.lo + a.hi;
    return b.x + b.y;
}

// Walks the values [j0, j1) of channel c plane segment by plane segment: for each, base is the global
// index of its first value and len its length; the body (variadic: it may hold commas) sees both.
#define BN_SEGMENTS(j0, j1, ...)                                    \
    for (int bn_j = (j0); bn_j < (j1);) {                           \
        const int bn_n = bn_j / HW, bn_i = bn_j - bn_n * HW;        \
        const int len = min(HW - bn_i, (j1) - bn_j);                \
        const size_t base = ((size_t)bn_n * C + c) * HW + bn_i;     \
        __VA_ARGS__                                                 \
        bn_j += len;                                                \
    }

// First value of slice k of S over M values.
inline int bn_slice_start(const int k, const int S, const int M) { return (int)(((long)k * M) / S); }

// Forward statistics of values [j0, j1) of channel c: *sum, and *m2 = sum (x - sum/n)^2.
inline void bn_cpu_stats(__global const float *x, const int C, const int HW, const int c, const int j0, const int j1,
                         float *sum_out, float *m2_out) {
    float8 a0 = (float8)(0.0f), a1 = a0;
    float t = 0.0f;
    BN_SEGMENTS(j0, j1, {
        __global const float *p = x + base;
        int k = 0;
        for (; k + 16 <= len; k += 16) { a0 += BN_LD8(p + k); a1 += BN_LD8(p + k + 8); }
        for (; k + 8 <= len; k += 8) a0 += BN_LD8(p + k);
        for (; k < len; ++k) t += p[k];
    })
    const float sum = bn_hsum8(a0 + a1) + t;
    const float mean = sum / (float)(j1 - j0);
    a0 = (float8)(0.0f); a1 = a0; t = 0.0f;
    BN_SEGMENTS(j0, j1, {
        __global const float *p = x + base;
        int k = 0;
        for (; k + 16 <= len; k += 16) {
            const float8 d0 = BN_LD8(p + k) - mean, d1 = BN_LD8(p + k + 8) - mean;
            a0 += d0 * d0;
            a1 += d1 * d1;
        }
        for (; k + 8 <= len; k += 8) { const float8 d = BN_LD8(p + k) - mean; a0 += d * d; }
        for (; k < len; ++k) { const float d = p[k] - mean; t += d * d; }
    })
    *sum_out = sum;
    *m2_out = bn_hsum8(a0 + a1) + t;
}

// y = BN_OUT(x a + b) over values [j0, j1) of channel c.
inline void bn_cpu_apply(__global const float *x, __global float *y, const int C, const int HW, const int c, const int j0, const int j1,
                         const float a, const float b) {
    BN_SEGMENTS(j0, j1, {
        __global const float *p = x + base;
        __global float *q = y + base;
        int k = 0;
        for (; k + 8 <= len; k += 8) { const float8 v = BN_OUT(BN_LD8(p + k) * a + b); BN_ST8(v, q + k); }
        for (; k < len; ++k) q[k] = BN_OUT(p[k] * a + b);
    })
}

// Channel c's (sum, m2) from its S slices' partials in slice order (Chan et al.'s combination).
inline float2 bn_cpu_combine(__global const float *part, const int S, const int M, const int c) {
    __global const float *pc = part + (size_t)c * S * 2;
    float sum = 0.0f;
    for (int s = 0; s < S; ++s) sum += pc[2 * s];
    const float mean = sum / (float)M;
    float m2 = 0.0f;
    for (int s = 0; s < S; ++s) {
        const int n = bn_slice_start(s + 1, S, M) - bn_slice_start(s, S, M);
        const float d = pc[2 * s] / (float)n - mean;
        m2 += pc[2 * s + 1] + (float)n * d * d;
    }
    return (float2)(sum, m2);
}

// Channel c's statistics from its sum and m2 over all M values; the work-item of slice `k` == 0
// writes mean_out, invstd_out and the running statistics; returns the affine y = x a + b.
inline float2 bn_cpu_finish(const float sum, const float m2, const int M, const int c, const int k,
                            __global const float *gamma, __global const float *beta,
                            __global float *running_mean, __global float *running_var,
                            __global float *mean_out, __global float *invstd_out, const float momentum, const float eps) {
    const float mean = sum / (float)M;
    const float var = m2 / (float)M;
    const float invstd = rsqrt(var + eps);
    if (k == 0) {
        mean_out[c] = mean;
        invstd_out[c] = invstd;
        const float unbiased = M > 1 ? var * (float)M / (float)(M - 1) : var;
        running_mean[c] = (1.0f - momentum) * running_mean[c] + momentum * mean;
        running_var[c] = (1.0f - momentum) * running_var[c] + momentum * unbiased;
    }
    const float a = gamma[c] * invstd;
    return (float2)(a, beta[c] - mean * a);
}

// S == 1: one work-item per channel (global size C).
__kernel void batchnorm_forward_cpu(__global const float *x, __global const float *gamma, __global const float *beta,
                                    __global float *running_mean, __global float *running_var,
                                    __global float *y, __global float *mean_out, __global float *invstd_out,
                                    const int N, const int C, const int HW, const float momentum, const float eps) {
    const int c = get_global_id(0);
    if (c >= C) return;
    const int M = N * HW;
    float sum, m2;
    bn_cpu_stats(x, C, HW, c, 0, M, &sum, &m2);
    const float2 ab = bn_cpu_finish(sum, m2, M, c, 0, gamma, beta, running_mean, running_var, mean_out, invstd_out, momentum, eps);
    bn_cpu_apply(x, y, C, HW, c, 0, M, ab.x, ab.y);
}

// S > 1, first launch: work-item c*S + k writes slice k's (sum, m2) to part[2*(c*S + k) ..].
__kernel void batchnorm_forward_cpu_partial(__global const float *x, __global float *part,
                                            const int N, const int C, const int HW, const int S) {
    const int w = get_global_id(0);
    if (w >= C * S) return;
    const int c = w / S, k = w - c * S, M = N * HW;
    float sum, m2;
    bn_cpu_stats(x, C, HW, c, bn_slice_start(k, S, M), bn_slice_start(k + 1, S, M), &sum, &m2);
    part[2 * w] = sum;
    part[2 * w + 1] = m2;
}

// S > 1, second launch: work-item c*S + k combines channel c's partials and writes slice k of y.
__kernel void batchnorm_forward_cpu_apply(__global const float *x, __global const float *gamma, __global const float *beta,
                                          __global float *running_mean, __global float *running_var,
                                          __global float *y, __global float *mean_out, __global float *invstd_out,
                                          __global const float *part, const int N, const int C, const int HW, const int S,
                                          const float momentum, const float eps) {
    const int w = get_global_id(0);
    if (w >= C * S) return;
    const int c = w / S, k = w - c * S, M = N * HW;
    const float2 sm = bn_cpu_combine(part, S, M, c);
    const float2 ab = bn_cpu_finish(sm.x, sm.y, M, c, k, gamma, beta, running_mean, running_var, mean_out, invstd_out, momentum, eps);
    bn_cpu_apply(x, y, C, HW, c, bn_slice_start(k, S, M), bn_slice_start(k + 1, S, M), ab.x, ab.y);
}

// Backward sums of values [j0, j1) of channel c: *sg = sum g, *sgx = sum g (x - mean) (g masked by BN_RELU).
inline void bn_cpu_bsums(__global const float *grad_out, __global const float *y_relu, __global const float *x,
                         const int C, const int HW, const int c, const int j0, const int j1, const float mean,
                         float *sg_out, float *sgx_out) {
    float8 g0 = (float8)(0.0f), g1 = g0, h0 = g0, h1 = g0;
    float tg = 0.0f, th = 0.0f;
    BN_SEGMENTS(j0, j1, {
        int k = 0;
        for (; k + 16 <= len; k += 16) {
            const size_t j = base + k;
            const float8 ga = BN_GRAD8(j), gb = BN_GRAD8(j + 8);
            g0 += ga;
            g1 += gb;
            h0 += ga * (BN_LD8(x + j) - mean);
            h1 += gb * (BN_LD8(x + j + 8) - mean);
        }
        for (; k + 8 <= len; k += 8) {
            const size_t j = base + k;
            const float8 g = BN_GRAD8(j);
            g0 += g;
            h0 += g * (BN_LD8(x + j) - mean);
        }
        for (; k < len; ++k) {
            const size_t j = base + k;
            const float g = BN_GRAD(j);
            tg += g;
            th += g * (x[j] - mean);
        }
    })
    *sg_out = bn_hsum8(g0 + g1) + tg;
    *sgx_out = bn_hsum8(h0 + h1) + th;
}

// grad_x over values [j0, j1) of channel c, given sg = sum g and sgx = sum g xhat.
inline void bn_cpu_bwrite(__global const float *grad_out, __global const float *y_relu, __global const float *x,
                          __global float *grad_x, const int C, const int HW, const int c, const int j0, const int j1,
                          const float mean, const float invstd, const float k_, const float mg, const float mgx, const int training) {
    BN_SEGMENTS(j0, j1, {
        int k = 0;
        if (training) {
            for (; k + 8 <= len; k += 8) {
                const size_t j = base + k;
                const float8 v = k_ * (BN_GRAD8(j) - mg - (BN_LD8(x + j) - mean) * invstd * mgx);
                BN_ST8(v, grad_x + j);
            }
            for (; k < len; ++k) {
                const size_t j = base + k;
                grad_x[j] = k_ * (BN_GRAD(j) - mg - (x[j] - mean) * invstd * mgx);
            }
        } else {
            for (; k + 8 <= len; k += 8) {
                const size_t j = base + k;
                const float8 v = k_ * BN_GRAD8(j);
                BN_ST8(v, grad_x + j);
            }
            for (; k < len; ++k) grad_x[base + k] = k_ * BN_GRAD(base + k);
        }
    })
}

// Channel c's (sg, sum g (x - mean)) from its S slices' partials in slice order.
inline float2 bn_cpu_bcombine(__global const float *part, const int S, const int c) {
    __global const float *pc = part + (size_t)c * S * 2;
    float sg = 0.0f, sgx = 0.0f;
    for (int s = 0; s < S; ++s) {
        sg += pc[2 * s];
        sgx += pc[2 * s + 1];
    }
    return (float2)(sg, sgx);
}

// S == 1: one work-item per channel (global size C).
__kernel void batchnorm_backward_cpu(__global const float *grad_out, __global const float *y_relu, __global const float *x,
                                     __global const float *gamma, __global const float *mean_in, __global const float *invstd_in,
                                     __global float *grad_x, __global float *grad_gamma, __global float *grad_beta,
                                     const int N, const int C, const int HW, const int training) {
    const int c = get_global_id(0);
    if (c >= C) return;
    const int M = N * HW;
    const float mean = mean_in[c], invstd = invstd_in[c];
    float sg, sgx;
    bn_cpu_bsums(grad_out, y_relu, x, C, HW, c, 0, M, mean, &sg, &sgx);
    sgx *= invstd;   // sum g * xhat
    grad_gamma[c] += sgx;
    grad_beta[c] += sg;
    bn_cpu_bwrite(grad_out, y_relu, x, grad_x, C, HW, c, 0, M, mean, invstd, gamma[c] * invstd, sg / (float)M, sgx / (float)M, training);
}

// S > 1, first launch: work-item c*S + k writes slice k's (sg, sum g (x - mean)) to part[2*(c*S + k) ..].
__kernel void batchnorm_backward_cpu_partial(__global const float *grad_out, __global const float *y_relu, __global const float *x,
                                             __global const float *mean_in, __global float *part,
                                             const int N, const int C, const int HW, const int S) {
    const int w = get_global_id(0);
    if (w >= C * S) return;
    const int c = w / S, k = w - c * S, M = N * HW;
    float sg, sgx;
    bn_cpu_bsums(grad_out, y_relu, x, C, HW, c, bn_slice_start(k, S, M), bn_slice_start(k + 1, S, M), mean_in[c], &sg, &sgx);
    part[2 * w] = sg;
    part[2 * w + 1] = sgx;
}

// S > 1, second launch: work-item c*S + k combines channel c's partials and writes slice k of grad_x.
__kernel void batchnorm_backward_cpu_apply(__global const float *grad_out, __global const float *y_relu, __global const float *x,
                                           __global const float *gamma, __global const float *mean_in, __global const float *invstd_in,
                                           __global float *grad_x, __global float *grad_gamma, __global float *grad_beta,
                                           __global const float *part, const int N, const int C, const int HW, const int S,
                                           const int training) {
    const int w = get_global_id(0);
    if (w >= C * S) return;
    const int c = w / S, k = w - c * S, M = N * HW;
    const float mean = mean_in[c], invstd = invstd_in[c];
    const float2 s = bn_cpu_bcombine(part, S, c);
    const float sgx = s.y * invstd;   // sum g * xhat
    if (k == 0) {
        grad_gamma[c] += sgx;
        grad_beta[c] += s.x;
    }
    bn_cpu_bwrite(grad_out, y_relu, x, grad_x, C, HW, c, bn_slice_start(k, S, M), bn_slice_start(k + 1, S, M),
                  mean, invstd, gamma[c] * invstd, s.x / (float)M, sgx / (float)M, training);
}
