// sge_common.cl: what both SGE kernel variants share, prepended to sge_gpu.cl or sge_cpu.cl
// (Kernels.swift): the layout, the defines, the slab access macros, the sigmoid and the parameter
// gradient kernel. The maths and its derivation are in Sources/SGEReference/SGE.swift.
//
// Layout: x, out, grad_out, grad_x are NCHW float32; with C = G*K the K channels of group g of
// sample n are contiguous, so slab s = n*G + g is the K x M block starting at s*K*M (M = H*W).
// Small per-slab state lives in global memory between kernels: means [N*C] (channel means m_k),
// stats [N*G][2] (mu, sigma), gsum [N*G][2] (sum ga, sum ga*t for the parameter gradients).
//
// Two variants, chosen by the WG define:
// - Wide (WG > 1, the GPU default WG=256): one work-group of WG work-items per slab
//   (get_group_id(0) = s). Positions i are strided over the work-items (i = lid, lid+WG, ...), so
//   consecutive work-items touch consecutive addresses of each channel row (coalesced). Per-channel
//   sums over i split each row into WG/K interleaved segments, one per work-item, combined in local
//   memory (2 barriers instead of K tree reductions). Scalar sums use a tree reduction in local
//   memory (WG must be a power of two).
// - Narrow (WG == 1, the CPU default): one work-item per slab walks it with explicit float8
//   vectors, position-outer where it can (c, the gate and out for 8 positions at a time), with no
//   barriers. PoCL runs a work-group as a loop on one core, so this is the fastest CPU mapping.
//
// Local memory: always c_i (M floats; backward also ga_i, and for the narrow variant the gate s_i),
// the K channel values and a reduction scratch of 2*max(K, WG) floats. With SLAB_LOCAL=1 (the
// local-memory path, chosen by the host for the wide variant when it fits the device's local
// memory) the slab of x (backward: x and grad_out) is loaded into local memory once and every pass
// reads it there; with SLAB_LOCAL=0 (the streaming path: slabs larger than local memory, and the
// narrow variant, whose slab stays in its core's cache anyway) every pass streams the slab from
// global memory (forward: 3 passes over x; backward: x 3 times and grad_out twice in the wide
// variant, x twice and grad_out twice in the narrow one). No full-size intermediate is written.
//
// Numerics: mu is computed shifted by c_0 and sigma by a second pass over the stored c (never
// E[c^2] - E[c]^2), so a spatially constant slab gives sigma = 0 exactly and finite results.

// No contraction of a*b+c into fma: the vector loops, their scalar tails and the scalar c_0 then round
// identically, so a spatially constant slab gives identical c_i and sigma = 0 exactly.
#pragma OPENCL FP_CONTRACT OFF

#ifndef WG
#define WG 64
#endif
#ifndef SLAB_LOCAL
#define SLAB_LOCAL 1
#endif
#ifndef SGE_EPS
#define SGE_EPS 1e-5f
#endif

#if SLAB_LOCAL
#define SLAB __local
#else
#define SLAB __global
#endif

inline float sge_sigmoid(const float a) { return 1.0f / (1.0f + exp(-a)); }

// sigma from the sum of squared deviations of M values (unbiased; 0 for M = 1).
inline float sge_sigma(const float ss, const int M) { return M > 1 ? sqrt(ss / (float)(M - 1)) : 0.0f; }

// Slab s's (mu, sigma) into stats[2s], stats[2s+1].
inline void sge_store_stats(__global float *stats, const int s, const float2 st) {
    stats[2 * s] = st.x;
    stats[2 * s + 1] = st.y;
}

// Backward at position i of a slab: c_i = sum_k m_k x_k,i, the normalised t_i and the gate
// s_i = sigmoid(w t_i + b) (written to *c_out, *t_out, *s_out), and the return value
// ga_i = (sum_k go_k,i x_k,i) s_i (1 - s_i). The scalar step of both variants (the narrow one's tail).
inline float sge_position_ga(SLAB const float *xs, SLAB const float *gos, __local const float *m, const int K, const int M,
                             const int i, const float mu, const float inv, const float w, const float b, const int normalize,
                             float *c_out, float *t_out, float *s_out) {
    float ci = 0.0f, gs = 0.0f;
    for (int k = 0; k < K; ++k) {
        const float xv = xs[k * M + i];
        ci += m[k] * xv;
        gs += gos[k * M + i] * xv;
    }
    const float t = normalize ? (ci - mu) * inv : ci;
    const float sv = sge_sigmoid(w * t + b);
    *c_out = ci;
    *t_out = t;
    *s_out = sv;
    return gs * sv * (1.0f - sv);
}

// Loads the slab into local memory (local path) or points at it in global memory (streaming path).
#if SLAB_LOCAL
#define LOAD_SLAB(name, src, local_buf)                                             \
    for (int e = get_local_id(0); e < K * M; e += WG) local_buf[e] = (src)[e];      \
    barrier(CLK_LOCAL_MEM_FENCE);                                                   \
    __local const float *name = local_buf;
#else
#define LOAD_SLAB(name, src, local_buf) __global const float *name = (src);
#endif


// The kernels' argument lists, the same in both variants, so the host binds one list to either.
#define SGE_FORWARD_ARGS                                                                            \
    __global const float *x, __global float *out, __global const float *weight, __global const float *bias, \
    __global float *means, __global float *stats, const int G, const int K, const int M, const int normalize, \
    __local float *xs_local, __local float *c, __local float *m, __local float *scratch
#define SGE_GATE_ARGS                                                                               \
    __global const float *x, __global float *gate, __global const float *weight, __global const float *bias, \
    const int G, const int K, const int M, const int normalize,                                     \
    __local float *xs_local, __local float *c, __local float *m, __local float *scratch
#define SGE_BACKWARD_ARGS                                                                           \
    __global const float *x, __global const float *grad_out, __global float *grad_x, __global const float *weight, \
    __global const float *bias, __global const float *means, __global const float *stats, __global float *gsum, \
    const int G, const int K, const int M, const int normalize, __local float *xs_local, __local float *gos_local, \
    __local float *c, __local float *ga, __local float *kv, __local float *scratch

// grad_weight[g] += sum_n gsum[n,g].y, grad_bias[g] += sum_n gsum[n,g].x (one work-item per group).
__kernel void sge_param_grad(__global const float *gsum, __global float *grad_weight, __global float *grad_bias,
                             const int N, const int G) {
    const int g = get_global_id(0);
    if (g >= G) return;
    float gw = 0.0f, gb = 0.0f;
    for (int n = 0; n < N; ++n) {
        gb += gsum[2 * (n * G + g)];
        gw += gsum[2 * (n * G + g) + 1];
    }
    grad_weight[g] += gw;
    grad_bias[g] += gb;
}
