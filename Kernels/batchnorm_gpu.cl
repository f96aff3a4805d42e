// batchnorm_gpu.cl: BatchNorm2d training forward and backward for GPUs, with several work-groups per
// channel (batchnorm.cl's one work-group per channel leaves most of a GPU idle: 16 channels are 16
// work-groups, and on an H200 BatchNorm was ~60% of a small-model training step).
// Maths and BN_RELU (the fused ReLU) in batchnorm_prelude.cl, which is prepended to this file.
// Layout: x, y, grads [N, C, H, W]; per channel the M = N*HW values are indexed e = n*HW + i, at
//   (n*C + c)*HW + i. Channel c is split into P contiguous parts of ceil(M/P) values.
// Mapping: work-group g = c*P + j owns part j of channel c; its L work-items (a power of two) stride
//   through the part, so neighbouring work-items read neighbouring addresses. Each kernel pair is
//   (partial statistics per part) then (every work-group merges its channel's P partials, in the same
//   order everywhere, and writes its part): two launches per op, two reads of x in the forward
//   (the second of a part the work-group just read, mostly from cache) and two in the backward.
// Local memory: L floats for tree_sum (reduce_prelude.cl, prepended like batchnorm_prelude.cl).
// Forward statistics merge each part's (count, mean, centred sum of squares) with Chan et al.'s
// pairwise formula, so the variance never suffers E[x^2] - E[x]^2 cancellation.


// The address of element e of channel c.
#define BNG_AT(e) ((size_t)((e) / HW * C + c) * HW + (e) % HW)

// Part j of a channel: [start, end).
#define BNG_PART(j)                                   \
    const int chunk = (M + P - 1) / P;                \
    const int start = min((j) * chunk, M);            \
    const int end = min(start + chunk, M);

// part[(c*P + j)*2 + 0/1] = mean and centred sum of squares of part j of channel c.
__kernel void batchnorm_gpu_stats(__global const float *x, __global float *part, const int N, const int C, const int HW,
                                  const int P, __local float *scratch) {
    const int c = get_group_id(0) / P, j = get_group_id(0) % P, l = get_local_id(0), L = get_local_size(0);
    const int M = N * HW;
    BNG_PART(j)
    float s = 0.0f;
    for (int e = start + l; e < end; e += L) s += x[BNG_AT(e)];
    const int count = end - start;
    const float total = tree_sum(scratch, s);
    const float mean = count > 0 ? total / (float)count : 0.0f;
    float q = 0.0f;
    for (int e = start + l; e < end; e += L) {
        const float d = x[BNG_AT(e)] - mean;
        q += d * d;
    }
    q = tree_sum(scratch, q);
    if (l == 0) {
        part[(c * P + j) * 2] = mean;
        part[(c * P + j) * 2 + 1] = q;
    }
}

// Merges the channel's parts (mean, variance over M values), writes the batch statistics and running
// statistics (work-group j = 0), then y = gamma (x - mean) invstd + beta on this work-group's part.
__kernel void batchnorm_gpu_normalize(__global const float *x, __global const float *part, __global const float *gamma,
                                      __global const float *beta, __global float *running_mean, __global float *running_var,
                                      __global float *y, __global float *mean_out, __global float *invstd_out,
                                      const int N, const int C, const int HW, const int P, const float momentum, const float eps) {
    const int c = get_group_id(0) / P, j = get_group_id(0) % P, l = get_local_id(0), L = get_local_size(0);
    const int M = N * HW;
    const int chunk = (M + P - 1) / P;
    // Chan et al.: merge (n_a, mean_a, m2_a) with (n_b, mean_b, m2_b), parts in order 0..P-1.
    float n = 0.0f, mean = 0.0f, m2 = 0.0f;
    for (int k = 0; k < P; k++) {
        const int s0 = min(k * chunk, M), nb = min(s0 + chunk, M) - s0;
        if (nb <= 0) continue;
        const float mb = part[(c * P + k) * 2], qb = part[(c * P + k) * 2 + 1];
        const float total = n + (float)nb, delta = mb - mean;
        mean += delta * (float)nb / total;
        m2 += qb + delta * delta * n * (float)nb / total;
        n = total;
    }
    const float var = m2 / (float)M;
    const float invstd = rsqrt(var + eps);
    if (j == 0 && l == 0) {
        mean_out[c] = mean;
        invstd_out[c] = invstd;
        const float unbiased = M > 1 ? var * (float)M / (float)(M - 1) : var;
        running_mean[c] = (1.0f - momentum) * running_mean[c] + momentum * mean;
        running_var[c] = (1.0f - momentum) * running_var[c] + momentum * unbiased;
    }
    const float a = gamma[c] * invstd, b = beta[c] - mean * a;
    const int start = min(j * chunk, M), end = min(start + chunk, M);
    for (int e = start + l; e < end; e += L) {
        const size_t at = BNG_AT(e);
        y[at] = BN_OUT(x[at] * a + b);
    }
}

// part[(c*P + j)*2 + 0/1] = sum of g and of g (x - mean) over part j of channel c (g masked by the
// fused ReLU when BN_RELU).
__kernel void batchnorm_gpu_backward_sums(__global const float *grad_out, __global const float *y_relu, __global const float *x,
                                          __global const float *mean_in, __global float *part,
                                          const int N, const int C, const int HW, const int P, __local float *scratch) {
    const int c = get_group_id(0) / P, j = get_group_id(0) % P, l = get_local_id(0), L = get_local_size(0);
    const int M = N * HW;
    const float mean = mean_in[c];
    BNG_PART(j)
    float sg = 0.0f, sgx = 0.0f;
    for (int e = start + l; e < end; e += L) {
        const size_t at = BNG_AT(e);
        const float g = BN_GRAD(at);
        sg += g;
        sgx += g * (x[at] - mean);
    }
    sg = tree_sum(scratch, sg);
    sgx = tree_sum(scratch, sgx);
    if (l == 0) {
        part[(c * P + j) * 2] = sg;
        part[(c * P + j) * 2 + 1] = sgx;
    }
}

// Sums the channel's parts (in order), accumulates dgamma/dbeta (work-group j = 0), and writes
// dx = gamma invstd / M (M g - sum g - xhat sum g xhat) (training) or gamma invstd g on its part.
__kernel void batchnorm_gpu_backward_apply(__global const float *grad_out, __global const float *y_relu, __global const float *x,
                                           __global const float *gamma, __global const float *mean_in,
                                           __global const float *invstd_in, __global const float *part,
                                           __global float *grad_x, __global float *grad_gamma, __global float *grad_beta,
                                           const int N, const int C, const int HW, const int P, const int training) {
    const int c = get_group_id(0) / P, j = get_group_id(0) % P, l = get_local_id(0), L = get_local_size(0);
    const int M = N * HW;
    const float mean = mean_in[c], invstd = invstd_in[c];
    float sg = 0.0f, sgx = 0.0f;
    for (int k = 0; k < P; k++) {
        sg += part[(c * P + k) * 2];
        sgx += part[(c * P + k) * 2 + 1];
    }
    sgx *= invstd;   // sum g * xhat
    if (j == 0 && l == 0) {
        grad_gamma[c] += sgx;
        grad_beta[c] += sg;
    }
    const float k = gamma[c] * invstd;
    const float mg = sg / (float)M, mgx = sgx / (float)M;
    BNG_PART(j)
    for (int e = start + l; e < end; e += L) {
        const size_t at = BNG_AT(e);
        const float g = BN_GRAD(at);
        grad_x[at] = training ? k * (g - mg - (x[at] - mean) * invstd * mgx) : k * g;
    }
}
