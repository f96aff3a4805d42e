// loss.cl: fused softmax cross-entropy: mean loss, number correct and the logits gradient in one kernel.
// Maths (see SGEReference/Loss.swift), for logits z [N, K] and float class labels y [N]:
//   m = max_k z_k, lse = m + log sum_k exp(z_k - m)         (max-subtracted: no overflow)
//   loss = (1/N) sum_n (lse_n - z_n,y_n),  grad_nk = (exp(z_nk - lse_n) - [k == y_n]) / N
//   correct = #{n : first argmax_k z_nk == y_n}
// An invalid label (not an integer in 0..K-1) cannot be thrown from a kernel: its row contributes NaN
// to the loss (flagging the batch) and only the softmax to the gradient; the host validates labels
// whenever they are on the host.
// Layout: logits and grad [N, K] row-major; labels [N]; loss and correct are 1-element buffers.
// Mapping: ONE WORK-GROUP of power-of-two size L for the whole batch (launched with global = local = L),
//   so the batch sums need no second kernel and no atomics; work-item l handles rows l, l + L, ...
//   and walks its row three times (max/argmax, sum of exp, gradient).
// Local memory: L floats, tree_sum (reduce_prelude.cl) for the loss sum and then the correct count.

__kernel void softmax_cross_entropy(__global const float *logits, __global const float *labels,
                                    __global float *loss, __global float *correct, __global float *grad,
                                    const int N, const int K, __local float *scratch) {
    const int l = get_local_id(0), L = get_local_size(0);
    const float inv_n = 1.0f / (float)N;
    float loss_sum = 0.0f, correct_sum = 0.0f;
    for (int row = l; row < N; row += L) {
        __global const float *z = logits + (size_t)row * K;
        __global float *g = grad + (size_t)row * K;
        const float label_f = labels[row];
        const int valid = label_f >= 0.0f && label_f < (float)K && label_f == floor(label_f);
        const int label = valid ? (int)label_f : -1;
        float m = -INFINITY;
        int best = 0;
        for (int k = 0; k < K; ++k)
            if (z[k] > m) { m = z[k]; best = k; }
        float s = 0.0f;
        for (int k = 0; k < K; ++k) s += exp(z[k] - m);
        const float lse = m + log(s);
        for (int k = 0; k < K; ++k) g[k] = (exp(z[k] - lse) - (k == label ? 1.0f : 0.0f)) * inv_n;
        loss_sum += valid ? lse - z[label] : NAN;
        correct_sum += (valid && best == label) ? 1.0f : 0.0f;
    }
    loss_sum = tree_sum(scratch, loss_sum);
    correct_sum = tree_sum(scratch, correct_sum);
    if (l == 0) {
        loss[0] = loss_sum * inv_n;
        correct[0] = correct_sum;
    }
}
