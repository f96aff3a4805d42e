// bandwidth.cl: copy_float4_stream, the streaming-store copy `sge bench` measures memory with next
// to elementwise.cl's plain copy_float4. It is a program of its own so that a driver that rejects
// the streaming-store builtin loses only this benchmark row, never a training kernel.
// Layout: two arrays of n4 float4s. Mapping: one work-item per float4; the kernel bound-checks because
// the host rounds the global size up to the work-group size. No local memory.
//
// With clang's __builtin_nontemporal_store (PoCL, and other clang-based compilers, GPUs' included)
// the stores are streaming stores; without it this is the plain copy. On a CPU a plain store first
// reads the destination line (read for ownership), so a plain copy moves 3 bytes per byte copied and
// a streaming one 2; SGE's CPU kernels stream their outputs, so this is their stricter reference.
// Streaming stores are weakly ordered on x86, but no fence is needed for the copy to be complete
// when the kernel is: the driver signals completion through locked instructions, and a locked
// operation waits for all earlier stores, buffered streaming ones included (Intel SDM vol. 3,
// 8.1.2 and 8.2.5). An sfence per work-group cost this copy 3-18% of its bandwidth on PoCL
// (work-groups of 1024 and 256), which would have flattered every kernel compared with it. (SGE's
// kernels fence once per slab, which measured free there.)
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
