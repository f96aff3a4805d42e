// sge_gpu.cl: the wide SGE variant (WG > 1, GPUs): one work-group of WG work-items per slab, positions
// strided over the work-items (coalesced), per-channel sums split into WG/K interleaved segments
// combined in local memory, scalar sums by a tree reduction (WG a power of two). Follows
// sge_common.cl (layout, defines, LOAD_SLAB) and reduce_prelude.cl (tree_sum).
#if WG < 2
#error "sge_gpu.cl is the wide variant: WG must be a power of two above 1 (sge_cpu.cl is WG = 1)"
#endif

// Two sums at once (scratch holds 2*WG floats).
inline float2 group_sum2(float a, float b, __local float *scratch) {
    const int lid = get_local_id(0);
    barrier(CLK_LOCAL_MEM_FENCE);
    scratch[lid] = a;
    scratch[WG + lid] = b;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = WG / 2; s > 0; s >>= 1) {
        if (lid < s) {
            scratch[lid] += scratch[lid + s];
            scratch[WG + lid] += scratch[WG + lid + s];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    return (float2)(scratch[0], scratch[WG]);
}

// out[k] = scale * sum_i u[i] xs[k*M+i] for k < K, or scale * sum_i xs[k*M+i] when u is 0 (a constant
// at every call site, so the branch folds away). Row k is split into `segs` interleaved segments;
// scratch holds max(K, WG) floats. Starts with a barrier so u written just before by other
// work-items is visible and a preceding group_sum2's scratch is free.
inline void channel_reduce(SLAB const float *xs, __local const float *u, const int K, const int M, const float scale,
                           __local float *out, __local float *scratch) {
    const int lid = get_local_id(0);
    const int segs = max(1, WG / K);
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int r = lid; r < K * segs; r += WG) {
        const int k = r / segs, seg = r - k * segs;
        SLAB const float *row = xs + k * M;
        float acc = 0.0f;
        if (u) for (int i = seg; i < M; i += segs) acc += u[i] * row[i];
        else for (int i = seg; i < M; i += segs) acc += row[i];
        scratch[r] = acc;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int k = lid; k < K; k += WG) {
        float acc = 0.0f;
        for (int s = 0; s < segs; ++s) acc += scratch[k * segs + s];
        out[k] = acc * scale;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
}

// Channel means into m[K], c_i into c[M], and the slab's mu and sigma.
inline float2 slab_stats(SLAB const float *xs, const int K, const int M, __local float *m, __local float *c,
                         __local float *scratch) {
    const int lid = get_local_id(0);
    channel_reduce(xs, 0, K, M, 1.0f / (float)M, m, scratch);
    for (int i = lid; i < M; i += WG) {
        float acc = 0.0f;
        for (int k = 0; k < K; ++k) acc += m[k] * xs[k * M + i];
        c[i] = acc;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    const float c0 = c[0];
    float part = 0.0f;
    for (int i = lid; i < M; i += WG) part += c[i] - c0;
    // tree_sum (reduce_prelude.cl) may write scratch at once: channel_reduce's last barrier and the
    // one above ordered every earlier use, and tree_sum ends with a barrier of its own.
    const float mu = c0 + tree_sum(scratch, part) / (float)M;
    part = 0.0f;
    for (int i = lid; i < M; i += WG) {
        const float d = c[i] - mu;
        part += d * d;
    }
    return (float2)(mu, sge_sigma(tree_sum(scratch, part), M));
}

// out = x * sigmoid(w t + b); writes means [N*C] and stats [N*G][2] for backward.
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void sge_forward(SGE_FORWARD_ARGS) {
    const int s = get_group_id(0), g = s % G, lid = get_local_id(0);
    const size_t base = (size_t)s * K * M;
    LOAD_SLAB(xs, x + base, xs_local)
    const float2 st = slab_stats(xs, K, M, m, c, scratch);
    for (int k = lid; k < K; k += WG) means[(size_t)s * K + k] = m[k];
    if (lid == 0) sge_store_stats(stats, s, st);
    const float w = weight[g], b = bias[g], inv = 1.0f / (st.y + SGE_EPS);
    __global float *o = out + base;
    for (int i = lid; i < M; i += WG) {
        const float t = normalize ? (c[i] - st.x) * inv : c[i];
        const float gate = sge_sigmoid(w * t + b);
        for (int k = 0; k < K; ++k) o[k * M + i] = xs[k * M + i] * gate;
    }
}

// The gate map sigmoid(a) [N, G, M] only (for visualisation).
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void sge_gate(SGE_GATE_ARGS) {
    const int s = get_group_id(0), g = s % G, lid = get_local_id(0);
    LOAD_SLAB(xs, x + (size_t)s * K * M, xs_local)
    const float2 st = slab_stats(xs, K, M, m, c, scratch);
    const float w = weight[g], b = bias[g], inv = 1.0f / (st.y + SGE_EPS);
    for (int i = lid; i < M; i += WG) {
        const float t = normalize ? (c[i] - st.x) * inv : c[i];
        gate[(size_t)s * M + i] = sge_sigmoid(w * t + b);
    }
}

// grad_x for one slab, and the slab's (sum ga, sum ga*t) into gsum for sge_param_grad.
// Pass 1 over (x, grad_out): c_i, ga_i and the slab sums; gc_i from them; R_k = (1/M) sum_i gc_i x[k,i]
// (a pass over x); pass 2 over (x, grad_out): grad_x[k,i] = go s_i + gc_i m_k + R_k (see the reference file).
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void sge_backward(SGE_BACKWARD_ARGS) {
    const int s = get_group_id(0), g = s % G, lid = get_local_id(0);
    const size_t base = (size_t)s * K * M;
    LOAD_SLAB(xs, x + base, xs_local)
    LOAD_SLAB(gos, grad_out + base, gos_local)
    __local float *m = kv, *r = kv + K;
    for (int k = lid; k < K; k += WG) m[k] = means[(size_t)s * K + k];
    barrier(CLK_LOCAL_MEM_FENCE);
    const float mu = stats[2 * s], sigma = stats[2 * s + 1];
    const float w = weight[g], b = bias[g], inv = 1.0f / (sigma + SGE_EPS);
    float pga = 0.0f, pgat = 0.0f;
    for (int i = lid; i < M; i += WG) {
        float ci, t, sg;
        const float gai = sge_position_ga(xs, gos, m, K, M, i, mu, inv, w, b, normalize, &ci, &t, &sg);
        c[i] = ci;
        ga[i] = gai;
        pga += gai;
        pgat += gai * t;
    }
    const float2 sums = group_sum2(pga, pgat, scratch);   // starts with a barrier: c, ga complete
    if (lid == 0) {
        gsum[2 * s] = sums.x;
        gsum[2 * s + 1] = sums.y;
    }
    // gc_i = alpha w ga_i + beta + gamma (c_i - mu), overwriting ga (each i is owned by one work-item).
    float alpha = 1.0f, beta = 0.0f, gamma = 0.0f;
    if (normalize) {
        alpha = inv;
        beta = -(w * sums.x / (float)M) * inv;
        gamma = sigma > 0.0f ? -(w * sums.y) * inv / ((float)(M - 1) * sigma) : 0.0f;
    }
    for (int i = lid; i < M; i += WG) ga[i] = alpha * w * ga[i] + beta + gamma * (c[i] - mu);
    // R_k = (1/M) sum_i gc_i x[k,i], summed directly: expanding it into per-channel sums of ga x and
    // c x (affine in gc) cancels catastrophically when sigma << |mu| (e.g. H*W = 2).
    channel_reduce(xs, ga, K, M, 1.0f / (float)M, r, scratch);
    __global float *gx = grad_x + base;
    for (int i = lid; i < M; i += WG) {
        const float ci = c[i];
        const float t = normalize ? (ci - mu) * inv : ci;
        const float sg = sge_sigmoid(w * t + b);
        const float gc = ga[i];
        for (int k = 0; k < K; ++k) gx[k * M + i] = gos[k * M + i] * sg + gc * m[k] + r[k];
    }
}
