// sge_cpu.cl: the narrow SGE variant (WG == 1, CPU drivers such as PoCL): one work-item walks its
// slab with explicit float8 vectors and no barriers; a work-group runs as a loop on one core there,
// so this is the fastest CPU mapping. Follows sge_common.cl (layout, defines, LOAD_SLAB),
// sge_cpu_hints.cl (prefetch and streaming-store macros) and vector_prelude.cl (exp8, hsum8).

// Narrow forward: planes of at most this many positions write out channel row by channel row.
#ifndef SGE_ROWS_MAX_M
#define SGE_ROWS_MAX_M 256
#endif


// LD8 reads the slab (SLAB address space; float8u and the global and local forms come from
// vector_prelude.cl).
#ifdef __clang__
#define LD8(p) (*(SLAB const float8u *)(p))
#else
#define LD8(p) vload8(0, p)
#endif

// ---- Narrow variant (WG == 1): one work-item walks its slab with explicit float8 vectors. On CPU
// drivers such as PoCL a work-group runs as a loop on one core, so a single work-item per slab with
// k-outer / i-inner vector loops (no barriers, no strided work-item loops) is the fastest mapping.

// sum_i row[i] for i < M (row_dot: sum_i row[i] u[i]). Four independent float8 accumulators so the
// adds are not one long dependency chain.
inline float row_sum(SLAB const float *row, const int M) {
    float8 a0 = (float8)(0.0f), a1 = a0, a2 = a0, a3 = a0;
    int i = 0;
    for (; i + 32 <= M; i += 32) {
        a0 += LD8(row + i);
        a1 += LD8(row + i + 8);
        a2 += LD8(row + i + 16);
        a3 += LD8(row + i + 24);
    }
    for (; i + 8 <= M; i += 8) a0 += LD8(row + i);
    float tail = 0.0f;
    for (; i < M; ++i) tail += row[i];
    return hsum8((a0 + a1) + (a2 + a3)) + tail;
}

inline float row_dot(SLAB const float *row, __local const float *u, const int M) {
    float8 a0 = (float8)(0.0f), a1 = a0, a2 = a0, a3 = a0;
    int i = 0;
    for (; i + 32 <= M; i += 32) {
        a0 += LD8(row + i) * LD8L(u + i);
        a1 += LD8(row + i + 8) * LD8L(u + i + 8);
        a2 += LD8(row + i + 16) * LD8L(u + i + 16);
        a3 += LD8(row + i + 24) * LD8L(u + i + 24);
    }
    for (; i + 8 <= M; i += 8) a0 += LD8(row + i) * LD8L(u + i);
    float tail = 0.0f;
    for (; i < M; ++i) tail += row[i] * u[i];
    return hsum8((a0 + a1) + (a2 + a3)) + tail;
}

#if SLAB_LOCAL
#define LOAD_SLAB1(name, src, local_buf)                                            \
    {                                                                               \
        int e = 0;                                                                  \
        for (; e + 8 <= K * M; e += 8) vstore8(vload8(0, (src) + e), 0, local_buf + e); \
        for (; e < K * M; ++e) local_buf[e] = (src)[e];                             \
    }                                                                               \
    __local const float *name = local_buf;
#else
#define LOAD_SLAB1(name, src, local_buf) __global const float *name = (src);
#endif

// Channel means into m, c into c, returns (mu, sigma): vector loops over one slab.
inline float2 slab_stats1(SLAB const float *xs, const int K, const int M, __local float *m, __local float *c) {
    for (int k = 0; k < K; ++k) m[k] = row_sum(xs + k * M, M) / (float)M;
    // c_i = sum_k m_k x[k,i], position-outer so c is written once; the shifted sum of c - c_0 rides along.
    float c0 = 0.0f;
    {
        float acc1 = 0.0f;
        for (int k = 0; k < K; ++k) acc1 += m[k] * xs[k * M];
        c0 = acc1;
    }
    float8 sh = (float8)(0.0f);
    float tail = 0.0f;
    int i = 0;
    // Four blocks of 8 positions at a time: four independent accumulation chains over k instead of
    // one (each position still sums its channels in the same order, so the result is unchanged).
    for (; i + 32 <= M; i += 32) {
        float8 a0 = (float8)(0.0f), a1 = a0, a2 = a0, a3 = a0;
        for (int k = 0; k < K; ++k) {
            SLAB const float *r = xs + k * M + i;
            const float mk = m[k];
            a0 += mk * LD8(r);
            a1 += mk * LD8(r + 8);
            a2 += mk * LD8(r + 16);
            a3 += mk * LD8(r + 24);
        }
        ST8L(a0, c + i);
        ST8L(a1, c + i + 8);
        ST8L(a2, c + i + 16);
        ST8L(a3, c + i + 24);
        sh += a0 - c0;
        sh += a1 - c0;
        sh += a2 - c0;
        sh += a3 - c0;
    }
    for (; i + 8 <= M; i += 8) {
        float8 acc = (float8)(0.0f);
        for (int k = 0; k < K; ++k) acc += m[k] * LD8(xs + k * M + i);
        ST8L(acc, c + i);
        sh += acc - c0;
    }
    for (; i < M; ++i) {
        float acc = 0.0f;
        for (int k = 0; k < K; ++k) acc += m[k] * xs[k * M + i];
        c[i] = acc;
        tail += acc - c0;
    }
    const float mu = c0 + (hsum8(sh) + tail) / (float)M;
    // Second pass over the stored c for sigma.
    float8 v0 = (float8)(0.0f), v1 = v0;
    tail = 0.0f;
    for (i = 0; i + 16 <= M; i += 16) {
        const float8 d0 = LD8L(c + i) - mu, d1 = LD8L(c + i + 8) - mu;
        v0 += d0 * d0;
        v1 += d1 * d1;
    }
    for (; i < M; ++i) tail += (c[i] - mu) * (c[i] - mu);
    const float ss = hsum8(v0 + v1) + tail;
    return (float2)(mu, sge_sigma(ss, M));
}

inline float8 sigmoid8(const float8 a) { return 1.0f / (1.0f + exp8(-a)); }

// The gate sigmoid(w t + b) of 8 positions from their c (t = (c - mu) * inv, or c unnormalised).
inline float8 gate8(const float8 ci, const float mu, const float inv, const float w, const float b, const int normalize) {
    return sigmoid8(w * (normalize ? (ci - mu) * inv : ci) + b);
}

// c[i] = sigmoid(w t_i + b) in place.
inline void gate_in_place(__local float *c, const int M, const float mu, const float inv, const float w, const float b,
                          const int normalize) {
    int i = 0;
    for (; i + 8 <= M; i += 8) ST8L(gate8(LD8L(c + i), mu, inv, w, b, normalize), c + i);
    for (; i < M; ++i) {
        const float t = normalize ? (c[i] - mu) * inv : c[i];
        c[i] = sge_sigmoid(w * t + b);
    }
}

__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void sge_forward(SGE_FORWARD_ARGS) {
    const int s = get_group_id(0), g = s % G;
    const size_t base = (size_t)s * K * M;
    LOAD_SLAB1(xs, x + base, xs_local)
    const float2 st = slab_stats1(xs, K, M, m, c);
    for (int k = 0; k < K; ++k) means[(size_t)s * K + k] = m[k];
    sge_store_stats(stats, s, st);
    const float mu = st.x, inv = 1.0f / (st.y + SGE_EPS), w = weight[g], b = bias[g];
    __global float *o = out + base;
    const int prefetch_next = SGE_PREFETCH && s + 1 < (int)get_num_groups(0);
    if (M <= SGE_ROWS_MAX_M) {
        // Small planes: the gate of every position into c first, then each channel row in turn
        // (one read and one write stream). Measured on PoCL with cold caches: 14x14 (K=16) 0.97 ->
        // 0.79 ms, 7x7 (K=32) 0.49 -> 0.41 ms; at 28x28 and 56x56 this order was 40% slower than
        // the position-outer loop below, hence the switch.
        gate_in_place(c, M, mu, inv, w, b, normalize);
#if SGE_STREAM_STORES
        if (M >= 16 && K * M >= SGE_STREAM_MIN_SLAB) {
            // The slab's output as one flat stream: element e is position i = e mod M, so 16
            // consecutive elements (one 64-byte line) use gates c[i..i+15], which wrap past the
            // row end at most once (M >= 16): c[M..M+15] repeats c[0..15] (c has M + 16 floats).
            // Scalar stores up to the first 64-byte boundary of out, then whole lines streamed.
            for (int j = 0; j < 16; ++j) c[M + j] = c[j];
            const int n = K * M;
            const int head = min(n, sge_floats_to_line(o));
            int e = 0, i = 0;
            for (; e < head; ++e) {
                o[e] = xs[e] * c[i];
                if (++i == M) i = 0;
            }
            for (; e + 16 <= n; e += 16) {
                SGE_NT_STORE8(LD8(xs + e) * LD8L(c + i), o + e);
                SGE_NT_STORE8(LD8(xs + e + 8) * LD8L(c + i + 8), o + e + 8);
                if (prefetch_next) SGE_PREFETCH_LINES(x + base + n + e, 1);
                i += 16;
                if (i >= M) i -= M;
            }
            for (; e < n; ++e) {
                o[e] = xs[e] * c[i];
                if (++i == M) i = 0;
            }
            SGE_STREAM_FENCE();
            return;
        }
#endif
        for (int k = 0; k < K; ++k) {
            SLAB const float *xrow = xs + k * M;
            __global float *orow = o + k * M;
            int j = 0;
            for (; j + 8 <= M; j += 8) ST8G(LD8(xrow + j) * LD8L(c + j), orow + j);
            for (; j < M; ++j) orow[j] = xrow[j] * c[j];
            if (prefetch_next) SGE_PREFETCH_LINES(x + base + K * M + k * M, M);
        }
        return;
    }
    // Larger planes, position-outer: the gate of 8 positions, then those positions of every channel.
    int i = 0;
#if SGE_STREAM_STORES
    // Streamed whole lines: 16 positions of each row per step, when every row starts on a 64-byte
    // boundary (M a multiple of 16 and out aligned); other planes keep the normal stores below.
    if ((M & 15) == 0 && ((size_t)o & 63) == 0) {
        for (; i + 16 <= M; i += 16) {
            const float8 s0 = gate8(LD8L(c + i), mu, inv, w, b, normalize);
            const float8 s1 = gate8(LD8L(c + i + 8), mu, inv, w, b, normalize);
            for (int k = 0; k < K; ++k) {
                SGE_NT_STORE8(LD8(xs + k * M + i) * s0, o + k * M + i);
                SGE_NT_STORE8(LD8(xs + k * M + i + 8) * s1, o + k * M + i + 8);
            }
            if (prefetch_next)
                for (int k = 0; k < K; ++k) SGE_PREFETCH_LINES(x + base + K * M + k * M + i, 1);
        }
        SGE_STREAM_FENCE();
    }
#endif
    for (; i + 8 <= M; i += 8) {
        const float8 sv = gate8(LD8L(c + i), mu, inv, w, b, normalize);
        for (int k = 0; k < K; ++k) ST8G(LD8(xs + k * M + i) * sv, o + k * M + i);
        // One line (16 floats) of each of the next slab's rows every other step.
        if (prefetch_next && (i & 15) == 0)
            for (int k = 0; k < K; ++k) SGE_PREFETCH_LINES(x + base + K * M + k * M + i, 1);
    }
    for (; i < M; ++i) {
        const float t = normalize ? (c[i] - mu) * inv : c[i];
        const float sv = sge_sigmoid(w * t + b);
        for (int k = 0; k < K; ++k) o[k * M + i] = xs[k * M + i] * sv;
    }
}

__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void sge_gate(SGE_GATE_ARGS) {
    const int s = get_group_id(0), g = s % G;
    LOAD_SLAB1(xs, x + (size_t)s * K * M, xs_local)
    const float2 st = slab_stats1(xs, K, M, m, c);
    gate_in_place(c, M, st.x, 1.0f / (st.y + SGE_EPS), weight[g], bias[g], normalize);
    for (int i = 0; i < M; ++i) gate[(size_t)s * M + i] = c[i];
}

// kv holds m (K) and the gate s (M) in this variant; R_k is computed per channel just before its row.
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void sge_backward(SGE_BACKWARD_ARGS) {
    const int s = get_group_id(0), g = s % G;
    const size_t base = (size_t)s * K * M;
    LOAD_SLAB1(xs, x + base, xs_local)
    LOAD_SLAB1(gos, grad_out + base, gos_local)
    __local float *m = kv, *sg = kv + K;
    for (int k = 0; k < K; ++k) m[k] = means[(size_t)s * K + k];
    const float mu = stats[2 * s], sigma = stats[2 * s + 1];
    const float w = weight[g], b = bias[g], inv = 1.0f / (sigma + SGE_EPS);
    // One position-outer pass over (x, grad_out): c_i, gs_i, the gate s_i, ga_i = gs_i s_i (1 - s_i),
    // and the slab sums of ga and ga t.
    float8 a8 = (float8)(0.0f), at8 = (float8)(0.0f);
    float a1 = 0.0f, at1 = 0.0f;
    int i = 0;
    for (; i + 8 <= M; i += 8) {
        float8 ci = (float8)(0.0f), gs = (float8)(0.0f);
        for (int k = 0; k < K; ++k) {
            const float8 xv = LD8(xs + k * M + i);
            ci += m[k] * xv;
            gs += LD8(gos + k * M + i) * xv;
        }
        const float8 t = normalize ? (ci - mu) * inv : ci;
        const float8 sv = sigmoid8(w * t + b);
        const float8 gav = gs * sv * (1.0f - sv);
        ST8L(ci, c + i);
        ST8L(sv, sg + i);
        ST8L(gav, ga + i);
        a8 += gav;
        at8 += gav * t;
    }
    for (; i < M; ++i) {
        float ci, t, sv;
        const float gav = sge_position_ga(xs, gos, m, K, M, i, mu, inv, w, b, normalize, &ci, &t, &sv);
        c[i] = ci;
        sg[i] = sv;
        ga[i] = gav;
        a1 += gav;
        at1 += gav * t;
    }
    const float sga = hsum8(a8) + a1, sgat = hsum8(at8) + at1;
    gsum[2 * s] = sga;
    gsum[2 * s + 1] = sgat;
    float alpha = 1.0f, beta = 0.0f, gamma = 0.0f;
    if (normalize) {
        alpha = inv;
        beta = -(w * sga / (float)M) * inv;
        gamma = sigma > 0.0f ? -(w * sgat) * inv / ((float)(M - 1) * sigma) : 0.0f;
    }
    const float aw = alpha * w;
    for (i = 0; i + 8 <= M; i += 8) ST8L(aw * LD8L(ga + i) + beta + gamma * (LD8L(c + i) - mu), ga + i);
    for (; i < M; ++i) ga[i] = aw * ga[i] + beta + gamma * (c[i] - mu);
    // R_k = (1/M) sum_i gc_i x[k,i]; then grad_x = go s + gc m_k + R_k.
    __global float *gx = grad_x + base;
    const int prefetch_next = SGE_PREFETCH && K * M <= SGE_PREFETCH_MAX_BWD && s + 1 < (int)get_num_groups(0);
    for (int k = 0; k < K; ++k) {
        const float mk = m[k], rk = row_dot(xs + k * M, ga, M) / (float)M;
        SLAB const float *grow = gos + k * M;
        __global float *gxrow = gx + k * M;
        int j = 0;
#if SGE_STREAM_STORES
        // Streamed whole lines of the row after a scalar head up to its first 64-byte boundary.
        if (M >= SGE_STREAM_MIN_M_BWD) {
            const int head = min(M, sge_floats_to_line(gxrow));
            for (; j < head; ++j) gxrow[j] = grow[j] * sg[j] + ga[j] * mk + rk;
            for (; j + 16 <= M; j += 16) {
                SGE_NT_STORE8(LD8(grow + j) * LD8L(sg + j) + LD8L(ga + j) * mk + rk, gxrow + j);
                SGE_NT_STORE8(LD8(grow + j + 8) * LD8L(sg + j + 8) + LD8L(ga + j + 8) * mk + rk, gxrow + j + 8);
            }
        }
#endif
        for (; j + 8 <= M; j += 8)
            ST8G(LD8(grow + j) * LD8L(sg + j) + LD8L(ga + j) * mk + rk, gxrow + j);
        for (; j < M; ++j) gxrow[j] = grow[j] * sg[j] + ga[j] * mk + rk;
        if (prefetch_next) {
            SGE_PREFETCH_LINES(x + base + K * M + k * M, M);
            SGE_PREFETCH_LINES(grad_out + base + K * M + k * M, M);
        }
    }
#if SGE_STREAM_STORES
    if (M >= SGE_STREAM_MIN_M_BWD) SGE_STREAM_FENCE();
#endif
}
