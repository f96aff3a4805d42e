// loss.cl: fused softmax cross-entropy: mean loss, number correct and the logits gradient in one launch.
// Maths (see SGEReference/Loss.swift), for logits z [N, K] and float class labels y [N]:
//   m = max_k z_k, lse = m + log sum_k exp(z_k - m)         (max-subtracted: no overflow)
//   loss = (1/N) sum_n (lse_n - z_n,y_n),  grad_nk = (exp(z_nk - lse_n) - [k == y_n]) / N
//   correct = #{n : first argmax_k z_nk == y_n}
// An invalid label (not an integer in 0..K-1) cannot be thrown from a kernel: its row contributes NaN
// to the loss (flagging the batch) and only the softmax to the gradient; the host validates labels
// whenever they are on the host.
// Layout: logits and grad [N, K] row-major; labels [N]; loss and correct are 1-element buffers;
//   row_out [2N] gets each row's loss term lse - z_y (NaN for an invalid label), then its correct
//   flag (0 or 1); done is an int that is 0 between launches.
// Batch totals in the same launch, whatever the number of work-groups: each group stores its rows'
//   terms (atomic_xchg, so they reach device-coherent memory on GPUs), fences, and counts itself done
//   with atomic_inc on `done`; the group that draws the last ticket sums row_out (work-item l takes
//   rows l, l + L, ... in order, then tree_sum, the order of the single-group kernel this replaced)
//   and sets `done` back to 0. The order of the sum depends on N and L only, not on which group ends
//   last, so results are deterministic.
// Three kernels (Ops/Loss.swift picks by K and device):
//   softmax_cross_entropy_rows, small K: one work-item per row, scalar, walking its row three times
//     (max/argmax, sum of exp, gradient) exactly as the single-group kernel did, so the default
//     model's gradients (K = 10) are bit-identical to it.
//   softmax_cross_entropy, larger K on GPUs: L work-items per row, R rows per work-group; item l
//     takes the float16 chunks l, l + L, ... of its row (L ~ K/16). Pass 1: the max m (then, only if
//     z_y == m, a scan of the classes before y for the first argmax); pass 2: e = exp(z - m) stored
//     into grad, and its sum s; pass 3: grad = e * (1/(N s)), minus 1/N at the label. Reusing e
//     halves the exps; e/s differs from exp(z - lse) by a few ulps.
//   softmax_cross_entropy_cpu, larger K on CPU drivers: the same arithmetic with one work-item per
//     group walking R rows in whole float16 vectors (a group runs on one core and explicit vectors
//     are the vector code), the next row's max taken during this row's exps.
// Local memory: L floats (tree_sum and tree_max from reduce_prelude.cl); the unaligned vector loads
//   come from vector_prelude.cl.

// The class index of a float label, or -1 when it is not an integer in 0..K-1.
inline int class_index(const float label_f, const int K) {
    const int valid = label_f >= 0.0f && label_f < (float)K && label_f == floor(label_f);
    return valid ? (int)label_f : -1;
}

// Stores one row's loss term and correct flag for the batch totals (finish_batch).
inline void put_row(__global float *row_out, const int N, const int row, const float term, const float hit) {
    atomic_xchg((volatile __global float *)row_out + row, term);
    atomic_xchg((volatile __global float *)row_out + N + row, hit);
}

// After every row of this group is in row_out: the last group to finish writes loss and correct.
// `scratch` holds at least L floats; every work-item of the group must call this.
// The last group to take a ticket sums every group's rows. OpenCL 1.2 orders memory only within a
// work-group, so this relies on what CUDA-era drivers and PoCL do in practice (a global fence before
// the atomic ticket makes a group's rows visible device-wide); `validate` and LossTests check it
// with many groups on each device they run on.
inline void finish_batch(__global float *row_out, volatile __global int *done, __global float *loss,
                         __global float *correct, const int N, __local float *scratch) {
    const int l = get_local_id(0), L = get_local_size(0);
    mem_fence(CLK_GLOBAL_MEM_FENCE);  // this item's rows before the group counts itself done
    barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE);
    if (l == 0) scratch[0] = atomic_inc(done) == (int)get_num_groups(0) - 1 ? 1.0f : 0.0f;
    barrier(CLK_LOCAL_MEM_FENCE);
    const int last = scratch[0] != 0.0f;
    barrier(CLK_LOCAL_MEM_FENCE);
    if (last) {  // uniform across the group, so the barriers in tree_sum are allowed
        mem_fence(CLK_GLOBAL_MEM_FENCE);  // the other groups' rows after their tickets
        volatile __global const float *r = row_out;
        float loss_sum = 0.0f, correct_sum = 0.0f;
        for (int row = l; row < N; row += L) {
            loss_sum += r[row];
            correct_sum += r[N + row];
        }
        loss_sum = tree_sum(scratch, loss_sum);
        correct_sum = tree_sum(scratch, correct_sum);
        if (l == 0) {
            loss[0] = loss_sum * (1.0f / (float)N);
            correct[0] = correct_sum;
            atomic_xchg(done, 0);
        }
    }
}

// Small K: work-item i takes row i. Launched with global = N rounded up to L, L a power of two.
__kernel void softmax_cross_entropy_rows(__global const float *logits, __global const float *labels,
                                         __global float *loss, __global float *correct, __global float *grad,
                                         __global float *row_out, volatile __global int *done,
                                         const int N, const int K, __local float *scratch) {
    const int row = get_global_id(0);
    const float inv_n = 1.0f / (float)N;
    if (row < N) {
        __global const float *z = logits + (size_t)row * K;
        __global float *g = grad + (size_t)row * K;
        const int label = class_index(labels[row], K);
        float m = -INFINITY;
        int best = 0;
        for (int k = 0; k < K; ++k)
            if (z[k] > m) { m = z[k]; best = k; }
        float s = 0.0f;
        for (int k = 0; k < K; ++k) s += exp(z[k] - m);
        const float lse = m + log(s);
        for (int k = 0; k < K; ++k) g[k] = (exp(z[k] - lse) - (k == label ? 1.0f : 0.0f)) * inv_n;
        put_row(row_out, N, row, label >= 0 ? lse - z[label] : NAN, (label >= 0 && best == label) ? 1.0f : 0.0f);
    }
    finish_batch(row_out, done, loss, correct, N, scratch);
}

// Chunk k..k+15 of a row of K values; lanes at or past K read -INFINITY (no max, exp 0 below).
inline float16 load_chunk(__global const float *z, const int k, const int K) {
    if (k + 16 <= K) return LD16G(z + k);
    float t[16];
    for (int j = 0; j < 16; ++j) t[j] = k + j < K ? z[k + j] : -INFINITY;
    return vload16(0, t);
}

// Stores the lanes of chunk k..k+15 that are below K.
inline void store_chunk(__global float *g, const int k, const int K, const float16 v) {
    if (k + 16 <= K) {
        ST16G(v, g + k);
        return;
    }
    float t[16];
    vstore16(v, 0, t);
    for (int j = 0; k + j < K; ++j) g[k + j] = t[j];
}

// e^d for d <= 0 (d = z - max): 0 below -87, NaN stays NaN; within 7e-8 relative of exp on the
// reduced range (the polynomial's own error 2e-9, then float32 rounding; vector_prelude.cl's degree-7
// Taylor form measured 6e-8), with two fma and one integer op fewer than that form (the exp is most
// of these kernels' arithmetic):
//   n = round(d / ln2): adding 1.5 * 2^23 + 127 rounds to an integer and leaves n + 127 in the low
//     bits of t (one instruction where PoCL's rint is ~15), so 2^n is those bits shifted into the
//     exponent field (the bits above shift out);
//   r = d - n ln2 in one fma with ln2 rounded to float (Cody-Waite's two-constant split takes two):
//     the constant's error, 1.9e-9, times |n| adds |n| * 1.9e-9 relative: under half a float32 ulp
//     where e^d > 2^-16, 2.4e-7 at the bottom of the range (e^d ~ 2^-126, nothing next to the row's
//     sum of at least 1);
//   e^r, |r| <= ln2/2: degree-6 polynomial fitted for relative error (minimax, 2e-9), 6 fma.
inline float16 exp_neg16(const float16 d) {
    const int16 tiny = d < -87.0f;
    const float16 x = select(d, (float16)(-87.0f), tiny);
    const float16 t = fma(x, (float16)(1.44269504088896341f), (float16)(12583039.0f));
    const float16 n = t - 12583039.0f;
    const float16 r = fma(n, (float16)(-0.693147182464599609375f), x);
    float16 p = fma(r, (float16)(1.3843607157468796e-3f), (float16)(8.374195545911789e-3f));
    p = fma(p, r, (float16)(4.166800528764725e-2f));
    p = fma(p, r, (float16)(0.16666430234909058f));
    p = fma(p, r, (float16)(0.4999999403953552f));
    p = fma(p, r, (float16)(1.0f));
    p = fma(p, r, (float16)(1.0f));
    return select(p * as_float16(as_int16(t) << 23), (float16)(0.0f), tiny);
}

// The larger of a and b; NaN never wins (as `z > m` in a scan from -inf).
#define TREE_MAX(a, b) ((b) > (a) ? (b) : (a))
DEFINE_TREE_REDUCE(tree_max, TREE_MAX)

// The largest lane of v (NaN lanes never win).
inline float hmax16(const float16 v) {
    const float8 a = select(v.lo, v.hi, v.hi > v.lo);
    const float4 b = select(a.lo, a.hi, a.hi > a.lo);
    const float2 c = select(b.lo, b.hi, b.hi > b.lo);
    return c.y > c.x ? c.y : c.x;
}

// Larger K: group g takes rows g*R .. g*R + R - 1, its L items the float16 chunks of each row in turn.
// Launched with global = groups * L, local = L. scratch: L floats.
__kernel void softmax_cross_entropy(__global const float *logits, __global const float *labels,
                                    __global float *loss, __global float *correct, __global float *grad,
                                    __global float *row_out, volatile __global int *done,
                                    const int N, const int K, const int R, __local float *scratch) {
    const int l = get_local_id(0), L = get_local_size(0);
    const float inv_n = 1.0f / (float)N;
    const int16 lane = (int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const int first = get_group_id(0) * R, end = min(N, first + R);
    for (int row = first; row < end; ++row) {
        __global const float *z = logits + (size_t)row * K;
        __global float *g = grad + (size_t)row * K;
        const int label = class_index(labels[row], K);
        // Pass 1: the max (NaN never wins, as in the reference's `z > m`).
        float16 m16 = (float16)(-INFINITY);
        for (int k = 16 * l; k < K; k += 16 * L) {
            const float16 z16 = load_chunk(z, k, K);
            m16 = select(m16, z16, z16 > m16);
        }
        const float m = tree_max(scratch, hmax16(m16));
        // Correct when the label's logit is the max and no earlier class reaches it (the first argmax);
        // only rows whose label reaches the max rescan, and only up to the label.
        float hit = 0.0f;
        if (label >= 0 && z[label] == m) {  // uniform across the group
            int earlier = 0;
            for (int k = 16 * l; k < label; k += 16 * L)
                earlier |= any((load_chunk(z, k, K) == m) & (lane + k < label));
            hit = tree_sum(scratch, earlier ? 1.0f : 0.0f) == 0.0f ? 1.0f : 0.0f;
        }
        // Pass 2: e = exp(z - m) into grad (padding lanes give 0), and the sum of e.
        float16 s16 = (float16)(0.0f);
        for (int k = 16 * l; k < K; k += 16 * L) {
            const float16 d = load_chunk(z, k, K) - m;
            const float16 e = exp_neg16(d);
            s16 += e;
            store_chunk(g, k, K, e);
        }
        const float s = tree_sum(scratch, hsum8(s16.lo + s16.hi));
        // Pass 3: scale; the item that wrote the label's chunk subtracts 1/N there.
        const float scale = inv_n / s;
        for (int k = 16 * l; k < K; k += 16 * L) store_chunk(g, k, K, load_chunk(g, k, K) * scale);
        if (label >= 0 && (label / 16) % L == l) g[label] -= inv_n;
        if (l == 0) put_row(row_out, N, row, label >= 0 ? m + log(s) - z[label] : NAN, hit);
    }
    finish_batch(row_out, done, loss, correct, N, scratch);
}

// The largest of a row's K >= 16 values (NaN never wins, as in the reference's `z > m`): whole
// float16 vectors in four independent chains, then the last vector at K - 16 (see below).
inline float row_max16(__global const float *z, const int K, const int full, const int tail) {
    float16 m0 = (float16)(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
    int k = 0;
    for (; k + 64 <= K; k += 64) {
        const float16 a = LD16G(z + k), b = LD16G(z + k + 16), c = LD16G(z + k + 32), d = LD16G(z + k + 48);
        m0 = select(m0, a, a > m0);
        m1 = select(m1, b, b > m1);
        m2 = select(m2, c, c > m2);
        m3 = select(m3, d, d > m3);
    }
    for (; k < full; k += 16) {
        const float16 a = LD16G(z + k);
        m0 = select(m0, a, a > m0);
    }
    if (full < K) {
        const float16 a = LD16G(z + tail);
        m1 = select(m1, a, a > m1);
    }
    m0 = select(m0, m1, m1 > m0);
    m2 = select(m2, m3, m3 > m2);
    return hmax16(select(m0, m2, m2 > m0));
}

// CPU drivers: group g takes rows g*R .. g*R + R - 1 with one work-item (a group runs on one core and
// explicit vectors are the vector code). Launched with global = groups, local = 1; needs K >= 16.
// The arithmetic of softmax_cross_entropy at L = 1, organised for a core:
// - whole float16 vectors only, the last one at K - 16 overlapping its predecessor when K % 16 != 0
//   (no lane-by-lane tail: the max is the same over repeated lanes, the sum masks them, their stores
//   write equal values, and the scaling reads that vector before and stores it after the others);
// - the next row's max is taken in the loop of this row's exps, so its logits arrive from memory
//   while the exps keep the core busy (the max pass alone, first from memory, was ~15% of the
//   kernel); only a group's first row has a pass of its own. Rows see the same max either way.
// - the sum of e in two chains (a vector add's latency, not its throughput, bounded one chain).
__kernel void softmax_cross_entropy_cpu(__global const float *logits, __global const float *labels,
                                        __global float *loss, __global float *correct, __global float *grad,
                                        __global float *row_out, volatile __global int *done,
                                        const int N, const int K, const int R, __local float *scratch) {
    const float inv_n = 1.0f / (float)N;
    const int16 lane = (int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const int full = K / 16 * 16;  // classes 0..full-1 are whole vectors from 0
    const int tail = K - 16;       // the last vector's start; used when full < K
    const int16 fresh = lane >= full - tail;  // its lanes past the whole vectors
    const int first = get_group_id(0) * R, end = min(N, first + R);
    float m = first < end ? row_max16(logits + (size_t)first * K, K, full, tail) : 0.0f;
    for (int row = first; row < end; ++row) {
        __global const float *z = logits + (size_t)row * K;
        __global float *g = grad + (size_t)row * K;
        __global const float *z_next = row + 1 < end ? z + K : z;  // the last row rescans itself
        const int label = class_index(labels[row], K);
        // Correct when the label's logit is the max and no earlier class reaches it (the first argmax).
        float hit = 0.0f;
        if (label >= 0 && z[label] == m) {
            int earlier = 0;
            for (int j = 0; j < label; j += 16) {
                const int at = min(j, tail);
                earlier |= any((LD16G(z + at) == m) & (lane + at < label));
            }
            hit = earlier ? 0.0f : 1.0f;
        }
        // e = exp(z - m) into grad and the sum of e; the next row's max m0/m1.
        float16 s0 = (float16)(0.0f), s1 = s0, m0 = (float16)(-INFINITY), m1 = m0;
        int k = 0;
        for (; k + 32 <= K; k += 32) {
            const float16 e = exp_neg16(LD16G(z + k) - m), f = exp_neg16(LD16G(z + k + 16) - m);
            const float16 a = LD16G(z_next + k), b = LD16G(z_next + k + 16);
            m0 = select(m0, a, a > m0);
            m1 = select(m1, b, b > m1);
            s0 += e;
            s1 += f;
            ST16G(e, g + k);
            ST16G(f, g + k + 16);
        }
        if (k < full) {
            const float16 e = exp_neg16(LD16G(z + k) - m), a = LD16G(z_next + k);
            m0 = select(m0, a, a > m0);
            s0 += e;
            ST16G(e, g + k);
        }
        if (full < K) {
            const float16 e = exp_neg16(LD16G(z + tail) - m), a = LD16G(z_next + tail);
            m1 = select(m1, a, a > m1);
            s1 += select((float16)(0.0f), e, fresh);
            ST16G(e, g + tail);
        }
        s0 += s1;
        const float s = hsum8(s0.lo + s0.hi);
        // Scale, then 1/N off the label.
        const float scale = inv_n / s;
        const float16 last = full < K ? LD16G(g + tail) * scale : (float16)(0.0f);
        for (k = 0; k < full; k += 16) ST16G(LD16G(g + k) * scale, g + k);
        if (full < K) ST16G(last, g + tail);
        if (label >= 0) g[label] -= inv_n;
        put_row(row_out, N, row, label >= 0 ? m + log(s) - z[label] : NAN, hit);
        m = hmax16(select(m0, m1, m1 > m0));
    }
    finish_batch(row_out, done, loss, correct, N, scratch);
}
