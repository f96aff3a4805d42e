// bandwidth.cl: the copies `sge bench` measures the device's memory bandwidth with (the limits the
// memory-bound kernels are compared against). Kept apart from the training kernels so that a driver
// that rejects the streaming store builtin can only lose that benchmark row.
// Layout: two arrays of n4 float4s. Mapping: one work-item per float4; kernels bound-check because
// the host rounds the global size up to the work-group size. No local memory.

// dst = src with plain stores: 1 read + 1 write per element, the reference `sge bench sge` reports
// every SGE row against (fraction_of_copy).
__kernel void copy_float4(__global const float4 *src, __global float4 *dst, const int n4) {
    int i = get_global_id(0);
    if (i < n4) dst[i] = src[i];
}

// The same copy with streaming (non-temporal) stores where the compiler has them (clang: PoCL). On a
// CPU a plain store first reads the destination line (read for ownership), so a plain copy moves 3
// bytes per byte copied and a streaming one 2; SGE's CPU forward and backward stream their outputs,
// so this is the stricter reference there. Elsewhere (GPUs, whose stores do not read) it is the plain copy.
#ifdef __has_builtin
#if __has_builtin(__builtin_nontemporal_store)
#define BANDWIDTH_NT_STORE 1
#endif
#endif
__kernel void copy_float4_stream(__global const float4 *src, __global float4 *dst, const int n4) {
    int i = get_global_id(0);
#ifdef BANDWIDTH_NT_STORE
    if (i < n4) __builtin_nontemporal_store(src[i], dst + i);
#else
    if (i < n4) dst[i] = src[i];
#endif
}
