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
// Two mappings (Ops/Loss.swift picks by K):
//   softmax_cross_entropy_rows, small K: one work-item per row, scalar, walking its row three times
//     (max/argmax, sum of exp, gradient) exactly as the single-group kernel did, so the default
//     model's gradients (K = 10) are bit-identical to it.
//   softmax_cross_entropy, larger K: L work-items per row, R rows per work-group; item l takes the
//     float16 chunks l, l + L, ... of its row (L = 1 on CPU drivers, where a group runs on one core
//     and explicit vectors are the vector code; L ~ K/16 on GPUs). Pass 1: the max m (then, only if
//     z_y == m, a scan of the classes before y for the first argmax); pass 2: e = exp(z - m) stored
//     into grad, and its sum s; pass 3: grad = e * (1/(N s)), minus 1/N at the label. Reusing e
//     halves the exps; e/s differs from exp(z - lse) by a few ulps.
// Local memory: L floats (tree_sum and tree_max from reduce_prelude.cl); the exp polynomial and the
//   unaligned vector loads come from vector_prelude.cl.

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

// LOSS_PREFETCH=1 (the host sets it for CPU drivers; needs clang's __builtin_prefetch): while a row's
// exps run, prefetch the next row's logits, a cache line per float16 chunk.
#if defined(LOSS_PREFETCH) && LOSS_PREFETCH && defined(__clang__)
#define PREFETCH_LINE(p) __builtin_prefetch(p)
#else
#define PREFETCH_LINE(p)
#endif

// e^d for d <= 0 (d = z - max): 0 below -87, NaN stays NaN. n = round(d / ln2) by adding 1.5 * 2^23
// (one instruction where PoCL's rint is ~15), 2^n from that sum's low bits.
inline float16 exp_neg16(const float16 d) {
    const int16 tiny = d < -87.0f;
    const float16 x = select(d, (float16)(-87.0f), tiny);
    const float16 t = x * 1.44269504088896341f + 12582912.0f;
    const float16 n = t - 12582912.0f;
    EXP_REDUCED(float16, x, n, p)
    return select(p * as_float16((as_int16(t) - (0x4B400000 - 127)) << 23), (float16)(0.0f), tiny);
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
            PREFETCH_LINE(z + K + k);
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
