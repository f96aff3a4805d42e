// vector_prelude.cl: explicit-vector helpers for kernels that walk rows with float8/float16 on CPU
// drivers (sge_cpu.cl, loss.cl, pool_cpu.cl, conv_cpu.cl), prepended by Kernels.swift: unaligned loads and stores, the exp
// polynomial (EXP_REDUCED), exp8, hsum8.

// Unaligned float8 loads and stores as single 32-byte moves. PoCL's vload8/vstore8 on a pointer only
// known to be float-aligned compile to four 8-byte pieces plus shuffles (seen in the generated x86).
// With clang (PoCL) a float8 type of alignment 4 gives plain unaligned vector moves; other compilers
// keep vload8/vstore8. LD8G, ST8G (and the float16 forms) read and write global memory, LD8L and
// ST8L local memory; sge_cpu.cl adds LD8 for its slab's address space.
#ifdef __clang__
typedef float float8u __attribute__((ext_vector_type(8), aligned(4)));
typedef float float16u __attribute__((ext_vector_type(16), aligned(4)));
#define LD8G(p) (*(__global const float8u *)(p))
#define ST8G(v, p) (*(__global float8u *)(p) = (v))
#define LD16G(p) (*(__global const float16u *)(p))
#define ST16G(v, p) (*(__global float16u *)(p) = (v))
#define LD8L(p) (*(__local const float8u *)(p))
#define ST8L(v, p) (*(__local float8u *)(p) = (v))
#else
#define LD8G(p) vload8(0, p)
#define ST8G(v, p) vstore8(v, 0, p)
#define LD16G(p) vload16(0, p)
#define ST16G(v, p) vstore16(v, 0, p)
#define LD8L(p) vload8(0, p)
#define ST8L(v, p) vstore8(v, 0, p)
#endif

// e^x = 2^n e^r with n = round(x / ln2) given by the caller, r = x - n ln2 (Cody-Waite split of ln2,
// |r| <= ln2/2) and e^r by its Taylor series to degree 7 (truncation < 5e-9 relative): declares the
// vector `p` of type T holding e^r; the caller multiplies by 2^n built from the exponent bits.
#define EXP_REDUCED(T, x, n, p)                                             \
    T p;                                                                    \
    {                                                                       \
        T r = x - n * 0.693359375f;                                         \
        r = r + n * 2.12194440e-4f;                                         \
        p = r * (1.0f / 5040.0f) + (1.0f / 720.0f);                         \
        p = p * r + (1.0f / 120.0f);                                        \
        p = p * r + (1.0f / 24.0f);                                         \
        p = p * r + (1.0f / 6.0f);                                          \
        p = p * r + 0.5f;                                                   \
        p = p * r + 1.0f;                                                   \
        p = p * r + 1.0f;                                                   \
    }

// e^x for float8 without a library call, so it vectorises on CPU drivers (a scalar libm exp per
// element dominated SGE's gate at 56x56). Within a few float32 ulps of exp() for x in [-87, 88]; x
// is clamped to that range, which only moves sigmoid values that round to 0 or 1 anyway.
inline float8 exp8(float8 x) {
    x = clamp(x, -87.0f, 88.0f);
    const float8 n = rint(x * 1.44269504088896341f);
    EXP_REDUCED(float8, x, n, p)
    return p * as_float8((convert_int8(n) + 127) << 23);
}

inline float hsum8(const float8 v) {
    const float4 a = v.lo + v.hi;
    const float2 b = a.lo + a.hi;
    return b.x + b.y;
}
