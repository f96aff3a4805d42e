// sge_cpu_hints.cl: memory hints for the narrow SGE variant on CPU drivers, prepended to sge_cpu.cl
// (Kernels.swift). Each is off unless the host sets its define and the compiler has the builtin.
// Prefetch: while a work-item writes one slab's output it prefetches the next slab (the one the same
// core most likely runs next), so that slab's first pass finds it in cache. The host sets
// SGE_PREFETCH=1 for non-GPU devices; it needs clang's __builtin_prefetch (PoCL; OpenCL's prefetch()
// is a no-op there). Backward prefetches only slabs of at most SGE_PREFETCH_MAX_BWD floats (a 56x56
// slab pair evicted the current one). Measured 15-30% faster on PoCL (docs/sge-kernels.md).
#if defined(SGE_PREFETCH) && SGE_PREFETCH && defined(__clang__)
#define SGE_PREFETCH_LINES(p, n)                                   \
    for (int pf_e = 0; pf_e < (n); pf_e += 16) __builtin_prefetch((p) + pf_e)
#else
#undef SGE_PREFETCH
#define SGE_PREFETCH 0
#define SGE_PREFETCH_LINES(p, n)
#endif
// Streaming (non-temporal) stores for the narrow kernels' outputs (forward out, backward grad_x), CPU
// drivers only: a normal store first reads each output line from memory (read for ownership), so
// writing out costs two transfers; a streaming store writes the whole line without reading it. The
// host sets SGE_STREAM_STORES=1 for non-GPU devices; it needs clang's __builtin_nontemporal_store
// (PoCL). Streaming stores are weakly ordered on x86, so a work-item that made them ends with an
// sfence (SGE_STREAM_FENCE) before its slab counts as written (the driver's completion, through
// locked instructions, would order them too; the fence costs nothing measurable here, one per slab).
// Results are bit-identical to the normal stores (same arithmetic, same order). Measured 1.2-1.4x
// faster on PoCL from slabs of ~512 floats up, slower below (SGE_STREAM_MIN_SLAB; docs/sge-kernels.md).
#ifndef SGE_STREAM_MIN_SLAB
#define SGE_STREAM_MIN_SLAB 512
#endif
// Backward streams grad_x row by row when rows have at least this many positions: at 7x7 (M = 49)
// each row's unaligned head and tail cost more than streaming saved (8x2048x7x7, 32x512x7x7).
#ifndef SGE_STREAM_MIN_M_BWD
#define SGE_STREAM_MIN_M_BWD 128
#endif
#ifdef __has_builtin
#if __has_builtin(__builtin_nontemporal_store)
#define SGE_HAVE_NT_STORE 1
#endif
#endif
#if defined(SGE_STREAM_STORES) && SGE_STREAM_STORES && defined(SGE_HAVE_NT_STORE)
// The value goes through a float8 variable first: stored straight from an expression of the
// 4-byte-aligned float8u type, clang took that alignment for the store and emitted eight scalar
// movnti instead of one vector vmovntps (seen in PoCL's x86).
#define SGE_NT_STORE8(v, p)                                                 \
    do {                                                                    \
        const float8 sge_nt_v = (v);                                        \
        __builtin_nontemporal_store(sge_nt_v, (__global float8 *)(p));      \
    } while (0)
#if __has_builtin(__builtin_ia32_sfence)
#define SGE_STREAM_FENCE() __builtin_ia32_sfence()
#else
#define SGE_STREAM_FENCE() mem_fence(CLK_GLOBAL_MEM_FENCE)
#endif
// Floats from p to the next 64-byte line boundary (0 when p is on one): the scalar head before
// whole lines can be streamed.
inline int sge_floats_to_line(__global const float *p) { return (int)(((64 - ((size_t)p & 63)) & 63) / 4); }
#else
#undef SGE_STREAM_STORES
#define SGE_STREAM_STORES 0
#endif
#ifndef SGE_PREFETCH_MAX_BWD
#define SGE_PREFETCH_MAX_BWD 8192
#endif

