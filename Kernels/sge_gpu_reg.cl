// sge_gpu_reg.cl: the register variant of the wide SGE kernels (GPUs): one work-group of WG
// work-items per slab, and the whole slab held in the work-items' registers, so x (backward: x and
// grad_out) is read from global memory exactly once and the output written once; the copy kernel's
// traffic, against 3 passes over x on the streaming path. Work-item l owns positions
// i = l + j*WG (j < PPT) of all KC channels (coalesced loads and stores per channel row), so c_i, the
// gate and everything per position stay in registers; only the per-channel sums (channel means,
// backward's R_k) and the scalar sums cross work-items, through local memory.
// Follows sge_common.cl (layout, defines, argument lists). Compile-time defines from the host:
//   WG   work-items per group, a power of two (the host picks the smallest with KC*PPT <= 32);
//   KC   channels per group (K; the K argument must equal it);
//   PPT  positions per work-item, ceil(M / WG);
//   RROWS rows of WG floats the reduction scratch holds (>= 2; channel sums go RROWS at a time).
// Every loop over KC, PPT and RROWS has a compile-time bound and is unrolled, so the arrays
// v[KC][PPT] and d[KC][PPT] are registers, not memory.
#if WG < 2 || !defined(KC) || !defined(PPT) || !defined(RROWS)
#error "sge_gpu_reg.cl needs WG > 1, KC, PPT and RROWS from the host"
#endif
#if RROWS < 2
#error "RROWS must be at least 2"
#endif

// Sums rows [0, rows) of red (row q is red[q*WG .. q*WG+WG)) in place: red[q*WG] gets row q's
// total. rows <= RROWS. Each step halves every row with all work-items sharing the adds; ends with a
// barrier, so the results can be read at once.
inline void reduce_rows(__local float *red, const int rows) {
    const int lid = get_local_id(0);
    barrier(CLK_LOCAL_MEM_FENCE);
    int sh = 0;
    while ((WG >> (sh + 1)) > 0) ++sh;   // log2(WG)
    for (int s = WG / 2; s > 0; s >>= 1) {
        --sh;   // s == 1 << sh
        for (int e = lid; e < rows * s; e += WG) {
            const int q = e >> sh, i = e - (q << sh);
            red[q * WG + i] += red[q * WG + i + s];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
}

// out_k = scale * (sum over work-items of part[k]) for k < KC, into out[KC] (local); RROWS channels
// at a time. Ends with a barrier.
inline void channel_sums(const float part[KC], const float scale, __local float *out, __local float *red) {
    const int lid = get_local_id(0);
#pragma unroll
    for (int k0 = 0; k0 < KC; k0 += RROWS) {
#pragma unroll
        for (int q = 0; q < RROWS; ++q)
            if (k0 + q < KC) red[q * WG + lid] = part[min(k0 + q, KC - 1)];
        reduce_rows(red, min(RROWS, KC - k0));
        if (lid < RROWS && k0 + lid < KC) out[k0 + lid] = red[lid * WG] * scale;
        barrier(CLK_LOCAL_MEM_FENCE);
    }
}

// Two scalar sums over the work-group. Ends with a barrier.
inline float2 sum2(const float a, const float b, __local float *red) {
    const int lid = get_local_id(0);
    barrier(CLK_LOCAL_MEM_FENCE);
    red[lid] = a;
    red[WG + lid] = b;
    reduce_rows(red, 2);
    const float2 r = (float2)(red[0], red[WG]);
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

// Loads the slab at src into v (zeros past M).
inline void load_slab(__global const float *src, const int M, float v[KC][PPT]) {
    const int lid = get_local_id(0);
#pragma unroll
    for (int j = 0; j < PPT; ++j) {
        const int i = lid + j * WG;
#pragma unroll
        for (int k = 0; k < KC; ++k) v[k][j] = i < M ? src[k * M + i] : 0.0f;
    }
}

// The forward statistics of a slab in registers: the channel means into m (local) and mk, c_i into c,
// and (mu, sigma) as in sge_gpu.cl: mu shifted by c_0, sigma from a second sum of (c_i - mu)^2, so a
// spatially constant slab gives sigma = 0 exactly.
inline float2 reg_stats(const float v[KC][PPT], const int M, float mk[KC], float c[PPT], __local float *m,
                        __local float *red) {
    const int lid = get_local_id(0);
    float part[KC];
#pragma unroll
    for (int k = 0; k < KC; ++k) {
        float acc = 0.0f;
#pragma unroll
        for (int j = 0; j < PPT; ++j) acc += v[k][j];
        part[k] = acc;
    }
    channel_sums(part, 1.0f / (float)M, m, red);
#pragma unroll
    for (int k = 0; k < KC; ++k) mk[k] = m[k];
#pragma unroll
    for (int j = 0; j < PPT; ++j) {
        float acc = 0.0f;
#pragma unroll
        for (int k = 0; k < KC; ++k) acc += mk[k] * v[k][j];
        c[j] = acc;
    }
    // c_0 lives with work-item 0 (j = 0); red is free after channel_sums' last barrier.
    if (lid == 0) red[2 * WG] = c[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    const float c0 = red[2 * WG];
    float pd = 0.0f;
#pragma unroll
    for (int j = 0; j < PPT; ++j)
        if (lid + j * WG < M) pd += c[j] - c0;
    const float mu = c0 + sum2(pd, 0.0f, red).x / (float)M;
    float pv = 0.0f;
#pragma unroll
    for (int j = 0; j < PPT; ++j)
        if (lid + j * WG < M) {
            const float dd = c[j] - mu;
            pv += dd * dd;
        }
    return (float2)(mu, sge_sigma(sum2(pv, 0.0f, red).x, M));
}

// out = x * sigmoid(w t + b); writes means [N*C] and stats [N*G][2] for backward.
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void sge_forward(SGE_FORWARD_ARGS) {
    const int s = get_group_id(0), g = s % G, lid = get_local_id(0);
    const size_t base = (size_t)s * KC * M;
    float v[KC][PPT], mk[KC], cv[PPT];
    load_slab(x + base, M, v);
    const float2 st = reg_stats(v, M, mk, cv, m, scratch);
    for (int k = lid; k < KC; k += WG) means[(size_t)s * KC + k] = m[k];
    if (lid == 0) sge_store_stats(stats, s, st);
    const float w = weight[g], b = bias[g], inv = 1.0f / (st.y + SGE_EPS);
    __global float *o = out + base;
#pragma unroll
    for (int j = 0; j < PPT; ++j) {
        const int i = lid + j * WG;
        if (i < M) {
            const float t = normalize ? (cv[j] - st.x) * inv : cv[j];
            const float gate = sge_sigmoid(w * t + b);
#pragma unroll
            for (int k = 0; k < KC; ++k) o[k * M + i] = v[k][j] * gate;
        }
    }
}

// The gate map sigmoid(a) [N, G, M] only (for visualisation).
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void sge_gate(SGE_GATE_ARGS) {
    const int s = get_group_id(0), g = s % G, lid = get_local_id(0);
    float v[KC][PPT], mk[KC], cv[PPT];
    load_slab(x + (size_t)s * KC * M, M, v);
    const float2 st = reg_stats(v, M, mk, cv, m, scratch);
    const float w = weight[g], b = bias[g], inv = 1.0f / (st.y + SGE_EPS);
#pragma unroll
    for (int j = 0; j < PPT; ++j) {
        const int i = lid + j * WG;
        if (i < M) {
            const float t = normalize ? (cv[j] - st.x) * inv : cv[j];
            gate[(size_t)s * M + i] = sge_sigmoid(w * t + b);
        }
    }
}

// grad_x for one slab, and the slab's (sum ga, sum ga*t) into gsum for sge_param_grad; the same
// steps as sge_gpu.cl's sge_backward with x and grad_out in registers (one read of each).
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void sge_backward(SGE_BACKWARD_ARGS) {
    const int s = get_group_id(0), g = s % G, lid = get_local_id(0);
    const size_t base = (size_t)s * KC * M;
    float v[KC][PPT], d[KC][PPT], mk[KC], cv[PPT], sg[PPT], gc[PPT];
    load_slab(x + base, M, v);
    load_slab(grad_out + base, M, d);
#pragma unroll
    for (int k = 0; k < KC; ++k) mk[k] = means[(size_t)s * KC + k];
    const float mu = stats[2 * s], sigma = stats[2 * s + 1];
    const float w = weight[g], b = bias[g], inv = 1.0f / (sigma + SGE_EPS);
    float pga = 0.0f, pgat = 0.0f;
#pragma unroll
    for (int j = 0; j < PPT; ++j) {
        float ci = 0.0f, gs = 0.0f;
#pragma unroll
        for (int k = 0; k < KC; ++k) {
            ci += mk[k] * v[k][j];
            gs += d[k][j] * v[k][j];
        }
        const float t = normalize ? (ci - mu) * inv : ci;
        const float sv = sge_sigmoid(w * t + b);
        const float gai = gs * sv * (1.0f - sv);   // 0 past M (v = d = 0 there)
        cv[j] = ci;
        sg[j] = sv;
        gc[j] = gai;
        pga += gai;
        pgat += gai * t;
    }
    const float2 sums = sum2(pga, pgat, scratch);
    if (lid == 0) {
        gsum[2 * s] = sums.x;
        gsum[2 * s + 1] = sums.y;
    }
    float alpha = 1.0f, beta = 0.0f, gamma = 0.0f;
    if (normalize) {
        alpha = inv;
        beta = -(w * sums.x / (float)M) * inv;
        gamma = sigma > 0.0f ? -(w * sums.y) * inv / ((float)(M - 1) * sigma) : 0.0f;
    }
    // gc_i = alpha w ga_i + beta + gamma (c_i - mu); R_k = (1/M) sum_i gc_i x[k,i] (v is 0 past M).
    float part[KC];
#pragma unroll
    for (int k = 0; k < KC; ++k) part[k] = 0.0f;
#pragma unroll
    for (int j = 0; j < PPT; ++j) {
        gc[j] = alpha * w * gc[j] + beta + gamma * (cv[j] - mu);
#pragma unroll
        for (int k = 0; k < KC; ++k) part[k] += gc[j] * v[k][j];
    }
    __local float *r = kv;
    channel_sums(part, 1.0f / (float)M, r, scratch);
    float rk[KC];
#pragma unroll
    for (int k = 0; k < KC; ++k) rk[k] = r[k];
    __global float *gx = grad_x + base;
#pragma unroll
    for (int j = 0; j < PPT; ++j) {
        const int i = lid + j * WG;
        if (i < M) {
#pragma unroll
            for (int k = 0; k < KC; ++k) gx[k * M + i] = d[k][j] * sg[j] + gc[j] * mk[k] + rk[k];
        }
    }
}
