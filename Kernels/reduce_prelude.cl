// reduce_prelude.cl: work-group tree reductions, prepended to the kernels that use them (Kernels.swift).
// Tree reduction of scratch[0..L) (L = the local size, a power of two) with COMBINE(a, b): every
// work-item passes its value and gets the result; scratch can be reused right after (a barrier ends
// the call). tree_sum adds; loss.cl also makes tree_max.
#define DEFINE_TREE_REDUCE(name, COMBINE)                                   \
    inline float name(__local float *scratch, float v) {                    \
        const int l = get_local_id(0), L = get_local_size(0);               \
        scratch[l] = v;                                                     \
        barrier(CLK_LOCAL_MEM_FENCE);                                       \
        for (int s = L / 2; s > 0; s >>= 1) {                               \
            if (l < s) scratch[l] = COMBINE(scratch[l], scratch[l + s]);    \
            barrier(CLK_LOCAL_MEM_FENCE);                                   \
        }                                                                   \
        const float r = scratch[0];                                         \
        barrier(CLK_LOCAL_MEM_FENCE);                                       \
        return r;                                                           \
    }
#define TREE_ADD(a, b) ((a) + (b))
DEFINE_TREE_REDUCE(tree_sum, TREE_ADD)
