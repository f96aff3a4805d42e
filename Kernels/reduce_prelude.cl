// reduce_prelude.cl: the work-group tree sum, prepended to the kernels that use it (Kernels.swift).
// Tree reduction of scratch[0..L) (L = the local size, a power of two): every work-item passes its
// value and gets the sum; scratch can be reused right after (a barrier ends the call).
inline float tree_sum(__local float *scratch, float v) {
    const int l = get_local_id(0), L = get_local_size(0);
    scratch[l] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = L / 2; s > 0; s >>= 1) {
        if (l < s) scratch[l] += scratch[l + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float r = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}
