# Shared inline helpers of the kernels: argument checks (with the GIL, once per call) and
# float/double maths dispatch (nogil).
#
# Everything here is ``cdef inline`` (or verbatim C), so a module that cimports this file needs
# no other extension at run time: no cross-module C-API import can fail because the installed
# name (dlrun.kernels.X) differs from the source folder name (kernels/X).
cimport numpy as cnp
from cython cimport floating
from libc.math cimport expm1, log1p
from libc.math cimport sqrt, sqrtf, fabs, fabsf
from libc.limits cimport INT_MAX


cdef extern from *:
    """
    #include <string.h>
    #include <stdint.h>

    /* exp(x) in float32, branch-free so that GCC vectorises loops that call it (libm's expf is
       an opaque call and is not). Cephes' expf: x = n ln2 + r, |r| <= ln2/2, a degree-6
       polynomial for e^r (max error ~1 ulp), 2^n built in the exponent bits. n is rounded with
       the 1.5 * 2^23 trick, which also leaves n in the low mantissa bits of t. The input is
       clamped to [-87, 88] so that 2^n stays a normal number: exp(x < -87) returns
       exp(-87) ~ 1.6e-38 (not 0) and exp(x > 88) returns exp(88) ~ 1.7e38 (not inf). NaN stays
       NaN. */
    static inline float dl_expf(float x) {
        x = x < -87.0f ? -87.0f : x;
        x = x > 88.0f ? 88.0f : x;
        float t = x * 1.44269504088896341f + 12582912.0f;
        float n = t - 12582912.0f;
        float r = x - n * 0.693359375f;
        r = r + n * 2.12194440e-4f;
        float p = 1.9875691500e-4f;
        p = p * r + 1.3981999507e-3f;
        p = p * r + 8.3334519073e-3f;
        p = p * r + 4.1665795894e-2f;
        p = p * r + 1.6666665459e-1f;
        p = p * r + 5.0000001201e-1f;
        p = p * r * r + r + 1.0f;
        int32_t ti;
        memcpy(&ti, &t, sizeof ti);
        int32_t e = (ti - 0x4B400000 + 127) << 23;
        float s;
        memcpy(&s, &e, sizeof s);
        return p * s;
    }

    /* tanh(x) in float32, branch-free (vectorisable): Eigen's odd rational approximation
       p(x) / q(x) on [-7.905, 7.905], where it reaches +-1 exactly, with the input clamped
       there; max error ~4e-7 relative (measured on a grid over [-10, 10] and 1e-30..10). */
    static inline float dl_tanhf(float x) {
        const float c = 7.90531110763549805f;
        x = x < -c ? -c : x;
        x = x > c ? c : x;
        float x2 = x * x;
        float p = -2.76076847742355e-16f;
        p = p * x2 + 2.00018790482477e-13f;
        p = p * x2 - 8.60467152213735e-11f;
        p = p * x2 + 5.12229709037114e-08f;
        p = p * x2 + 1.48572235717979e-05f;
        p = p * x2 + 6.37261928875436e-04f;
        p = p * x2 + 4.89352455891786e-03f;
        float q = 1.19825839466702e-06f;
        q = q * x2 + 1.18534705686654e-04f;
        q = q * x2 + 2.26843463243900e-03f;
        q = q * x2 + 4.89352518554385e-03f;
        return p * x / q;
    }

    /* log(w) for w in [1, 2], branch-free: Cephes' logf polynomial after reducing w to
       [sqrt(1/2), sqrt(2)) (w > sqrt(2): w / 2, plus ln 2 in two parts). */
    static inline float dl_log12f(float w) {
        /* reduce to m in [sqrt(1/2), sqrt(2)): w > sqrt(2) -> m = w / 2, k = 1 */
        float big = w > 1.41421356237f ? 1.0f : 0.0f;
        float m = big > 0.0f ? 0.5f * w : w;
        float x = m - 1.0f;
        float z = x * x;
        float y = 7.0376836292e-2f;
        y = y * x - 1.1514610310e-1f;
        y = y * x + 1.1676998740e-1f;
        y = y * x - 1.2420140846e-1f;
        y = y * x + 1.4249322787e-1f;
        y = y * x - 1.6668057665e-1f;
        y = y * x + 2.0000714765e-1f;
        y = y * x - 2.4999993993e-1f;
        y = y * x + 3.3333331174e-1f;
        y = y * x * z;
        y = y - 2.12194440e-4f * big;
        y = y - 0.5f * z;
        return x + y + 0.693359375f * big;
    }
    /* log(1 + u) for u in [0, 1], full relative precision for tiny u: Goldberg's
       compensation log(w) * u / (w - 1) with w = 1 + u rounded. Max error ~2e-7 relative. */
    static inline float dl_log1pf01(float u) {
        float w = 1.0f + u;
        float d = w - 1.0f;
        float r = dl_log12f(w) * (u / (d == 0.0f ? 1.0f : d));
        return d == 0.0f ? u : r;
    }
    /* e^a - 1 in float32, branch-free, full relative precision near 0 (Taylor series to a^7
       for |a| < 0.25, where it is exact to float precision; e^a - 1 outside). Max error
       ~3e-7 relative. Saturates like dl_expf for a > 88. */
    static inline float dl_expm1f(float a) {
        float p = 1.0f / 5040.0f;
        p = p * a + 1.0f / 720.0f;
        p = p * a + 1.0f / 120.0f;
        p = p * a + 1.0f / 24.0f;
        p = p * a + 1.0f / 6.0f;
        p = p * a + 0.5f;
        p = p * a * a + a;
        float e = dl_expf(a) - 1.0f;
        float aa = a < 0.0f ? -a : a;
        return aa < 0.25f ? p : e;
    }

    /* exp(x) in float64, branch-free (vectorisable): x = n ln2 + r with ln2 split in two
       (fdlibm's ln2_hi has 32 bits, so n ln2_hi is exact), e^r by its Taylor series to r^13
       (|r| <= ln2/2: truncation < 2e-16), 2^n in the exponent bits (n rounded with the
       1.5 * 2^52 trick). Clamped to [-708, 709]: exp(x < -708) returns exp(-708) ~ 3e-308,
       exp(x > 709) returns exp(709) ~ 8e307. NaN stays NaN. */
    static inline double dl_exp(double x) {
        x = x < -708.0 ? -708.0 : x;
        x = x > 709.0 ? 709.0 : x;
        double t = x * 1.4426950408889634074 + 6755399441055744.0;
        double n = t - 6755399441055744.0;
        double r = x - n * 6.93147180369123816490e-01;
        r = r - n * 1.90821492927058770002e-10;
        double p = 1.0 / 6227020800.0;
        p = p * r + 1.0 / 479001600.0;
        p = p * r + 1.0 / 39916800.0;
        p = p * r + 1.0 / 3628800.0;
        p = p * r + 1.0 / 362880.0;
        p = p * r + 1.0 / 40320.0;
        p = p * r + 1.0 / 5040.0;
        p = p * r + 1.0 / 720.0;
        p = p * r + 1.0 / 120.0;
        p = p * r + 1.0 / 24.0;
        p = p * r + 1.0 / 6.0;
        p = p * r + 0.5;
        p = p * r * r + r + 1.0;
        int64_t ti;
        memcpy(&ti, &t, sizeof ti);
        int64_t e = (ti - 0x4338000000000000LL + 1023) << 52;
        double s;
        memcpy(&s, &e, sizeof s);
        return p * s;
    }

    /* tanh(x) in float64, branch-free: Cephes' rational x + x^3 P(x^2) / Q(x^2) for
       |x| < 0.625, 1 - 2 / (exp(2|x|) + 1) with the sign restored above (|x| clamped at 20,
       where tanh is 1 to double precision). */
    static inline double dl_tanh(double x) {
        double a = x < 0.0 ? -x : x;
        double z = x * x;
        double p = (-9.64399179425052238628e-1 * z - 9.92877231001918586564e1) * z
                   - 1.61468768441708447952e3;
        double q = ((z + 1.12811678491632931402e2) * z + 2.23548839060100448583e3) * z
                   + 4.84406305325125486048e3;
        double small = x + x * z * p / q;
        double big = 1.0 - 2.0 / (dl_exp(2.0 * (a > 20.0 ? 20.0 : a)) + 1.0);
        big = x < 0.0 ? -big : big;
        return a < 0.625 ? small : big;
    }

    /* GCC function multi-versioning: a function marked DL_CLONES is compiled for x86-64-v4
       (AVX-512), x86-64-v3 (AVX2 + FMA) and the baseline, and the loader picks the best one
       the CPU supports; DL_CLONES_AVX2 leaves out the AVX-512 clone. Elsewhere both are
       ordinary functions. Every clone is compiled code (build time), so a loop keeps the
       AVX-512 one only where it was measured to pay (issue 16, CPU time per call on the
       AMD EPYC build machine, v4 against v3): the exp / tanh activations 1.3-1.5x, gelu's
       backward 1.14x, dropout forward 2.5x, the uint8 input conversion 1.15x. Where it did
       not (max pool 0.82x, the conv bias sums 0.91x, Adam 1.01x, the sparse row GEMV 1.02x)
       the loop is DL_CLONES_AVX2. The v3 and v4 clones give bit-identical results (both
       have FMA; the sums run in explicit lanes), the baseline does not. */
    #if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 && defined(__x86_64__) \
        && defined(__linux__)
    #define DL_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
    #define DL_CLONES_AVX2 __attribute__((target_clones("arch=x86-64-v3", "default")))
    #else
    #define DL_CLONES
    #define DL_CLONES_AVX2
    #endif
    """
    float dl_expf(float x) nogil
    float dl_tanhf(float x) nogil
    float dl_expm1f(float x) nogil
    float dl_log1pf01(float x) nogil
    double dl_exp(double x) nogil
    double dl_tanh(double x) nogil


# ---- the float32/float64 dispatch of the def wrappers --------------------------------------
#
# A nogil core is written once on the fused type ``floating``; Cython compiles one
# specialization per dtype (``core[float]``, ``core[double]``) and the wrapper picks one at run
# time from the dtype of its reference array, with the arguments written once:
#
#     with nogil:
#         float_dispatch(is_float32(X), _forward[float], _forward[double],
#                        act, n, d_in, d_out, data(X), data(W), data_or_null(B), data(Y), al)
#
# The arrays go in as ``void*`` (their data), which C converts to the ``float*`` or
# ``double*`` (``const`` or not) of the specialization called, as it converts a ``double``
# scalar to its ``floating`` parameter: exactly the conversions the explicit casts made. Each
# call is compiled against the specialization's own prototype, so a wrong argument count or a
# non-void* pointer of the wrong type is a compile error. No Python dispatch runs: a fused
# ``def`` with typed memoryviews was measured at +0.6 us per call of four arrays (Cython's
# signature lookup and one memoryview object per array), twice the whole cost of a small
# dense_forward. The argument checks (above) have already fixed the dtype of every array.
cdef extern from *:
    """
    /* F32(args) when `single`, else F64(args): one dtype dispatch, the arguments written once */
    #define DL_FLOAT_DISPATCH(single, F32, F64, ...) ((single) ? F32(__VA_ARGS__) : F64(__VA_ARGS__))
    """
    # one declaration per result type of the cores
    void float_dispatch "DL_FLOAT_DISPATCH"(bint single, ...) noexcept nogil
    int float_dispatch_int "DL_FLOAT_DISPATCH"(bint single, ...) noexcept nogil
    double float_dispatch_double "DL_FLOAT_DISPATCH"(bint single, ...) noexcept nogil
    Py_ssize_t float_dispatch_ssize "DL_FLOAT_DISPATCH"(bint single, ...) noexcept nogil


cdef inline bint is_float32(cnp.ndarray a) noexcept nogil:
    """True when the (checked) float array ``a`` is float32, False for float64."""
    return cnp.PyArray_TYPE(a) == cnp.NPY_FLOAT32


cdef inline void* data(cnp.ndarray a) noexcept nogil:
    """The data of a checked array, for float_dispatch."""
    return cnp.PyArray_DATA(a)


cdef inline void* data_or_null(cnp.ndarray a) noexcept:
    """The data of an optional array (None: NULL)."""
    return NULL if a is None else cnp.PyArray_DATA(a)


# ---- maths on the fused type ---------------------------------------------------------------

cdef inline floating f_exp(floating x) noexcept nogil:
    """e^x, vectorisable (dl_expf clamped to [-87, 88]; dl_exp clamped to [-708, 709])."""
    if floating is float:
        return dl_expf(x)
    else:
        return dl_exp(x)


cdef inline floating f_tanh(floating x) noexcept nogil:
    if floating is float:
        return dl_tanhf(x)
    else:
        return dl_tanh(x)


cdef inline floating f_expm1(floating x) noexcept nogil:
    """e^x - 1 (float32: the vectorisable dl_expm1f; float64: libm)."""
    if floating is float:
        return dl_expm1f(x)
    else:
        return expm1(x)


cdef inline floating f_log1p_unit(floating x) noexcept nogil:
    """log(1 + x) for x in [0, 1] only (float32: the vectorisable dl_log1pf01; float64: libm)."""
    if floating is float:
        return dl_log1pf01(x)
    else:
        return log1p(x)


cdef inline floating f_sqrt(floating x) noexcept nogil:
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


cdef inline floating f_abs(floating x) noexcept nogil:
    if floating is float:
        return fabsf(x)
    else:
        return fabs(x)


# ---- argument checks (once per call, with the GIL) -----------------------------------------
# The one family of argument checks of every kernel wrapper. A message names the function and
# the argument, says what was received and what was expected:
#     dense_forward: argument 'w' has dtype float64; expected float32 (the dtype of 'x'); ...
# A wrong type or dtype (byte order included) is a TypeError; a wrong shape, layout, range or
# an overlap is a ValueError.

cdef inline str received(object obj):
    """How a message names a value that is not an array: ``None``, or its type."""
    return "None" if obj is None else type(obj).__name__


cdef inline str shown(object value):
    """How a message shows a wrong scalar: ``None``, or its type and value (``str '0.5'``)."""
    return "None" if value is None else f"{type(value).__name__} {value!r}"


cdef inline cnp.ndarray check_float_dtype(object obj, str fn, str name):
    """Return ``obj`` as an ndarray after checking it is float32/float64 in native byte order
    (any shape or layout)."""
    if not isinstance(obj, cnp.ndarray):
        raise TypeError(f"{fn}: argument '{name}' must be a numpy.ndarray of float32 or "
                        f"float64, got {received(obj)}")
    cdef cnp.ndarray a = <cnp.ndarray>obj
    cdef int t = cnp.PyArray_TYPE(a)
    if t != cnp.NPY_FLOAT32 and t != cnp.NPY_FLOAT64:
        raise TypeError(f"{fn}: argument '{name}' has dtype {a.dtype}; expected float32 or "
                        f"float64")
    if not cnp.PyArray_ISNOTSWAPPED(a):
        raise TypeError(f"{fn}: argument '{name}' has dtype {a.dtype.str} (non-native byte "
                        f"order); expected float32 or float64 in native byte order")
    return a


cdef inline int check_layout(cnp.ndarray a, str fn, str name, bint writable) except -1:
    """C-contiguous and aligned; writeable too when ``writable`` (an output)."""
    if not cnp.PyArray_IS_C_CONTIGUOUS(a):
        raise ValueError(f"{fn}: argument '{name}' must be C-contiguous (got strides "
                         f"{(<object>a).strides} for shape {(<object>a).shape}); pass "
                         f"numpy.ascontiguousarray({name})")
    if not cnp.PyArray_ISALIGNED(a):
        raise ValueError(f"{fn}: argument '{name}' is not aligned for its dtype; pass a copy "
                         f"(numpy.array({name}))")
    if writable and not cnp.PyArray_ISWRITEABLE(a):
        raise ValueError(f"{fn}: output argument '{name}' is read-only; expected a writeable "
                         f"array")
    return 0


cdef inline cnp.ndarray check_float_array(object obj, str fn, str name, int ndim,
                                          bint writable):
    """Return ``obj`` as an ndarray after checking it is a C-contiguous, aligned, native-order
    float32/float64 array with ``ndim`` dimensions (any >= 1 when ndim < 0), writeable if asked."""
    cdef cnp.ndarray a = check_float_dtype(obj, fn, name)
    if ndim >= 0 and cnp.PyArray_NDIM(a) != ndim:
        raise ValueError(f"{fn}: argument '{name}' must be {ndim}-D, got shape "
                         f"{(<object>a).shape}")
    if ndim < 0 and cnp.PyArray_NDIM(a) < 1:
        raise ValueError(f"{fn}: argument '{name}' must have at least one dimension, got a "
                         f"0-D array")
    check_layout(a, fn, name, writable)
    return a


cdef inline cnp.ndarray check_uint8_array(object obj, str fn, str name, bint writable):
    """Return ``obj`` as a C-contiguous uint8 ndarray (any shape), writeable if asked."""
    if not isinstance(obj, cnp.ndarray):
        raise TypeError(f"{fn}: argument '{name}' must be a numpy.ndarray of uint8, got "
                        f"{received(obj)}")
    cdef cnp.ndarray a = <cnp.ndarray>obj
    if cnp.PyArray_TYPE(a) != cnp.NPY_UINT8:
        raise TypeError(f"{fn}: argument '{name}' has dtype {a.dtype}; expected uint8")
    check_layout(a, fn, name, writable)
    return a


cdef inline check_same_dtype(cnp.ndarray a, cnp.ndarray ref, str fn, str name, str refname):
    if cnp.PyArray_TYPE(a) != cnp.PyArray_TYPE(ref):
        raise TypeError(f"{fn}: argument '{name}' has dtype {a.dtype}; expected {ref.dtype} "
                        f"(the dtype of '{refname}'); one call uses one dtype")


cdef inline check_shape(cnp.ndarray a, tuple shape, str fn, str name, str why):
    """Raise ValueError unless ``a.shape == shape``; ``why`` explains where the shape comes from."""
    if (<object>a).shape != shape:
        raise ValueError(f"{fn}: argument '{name}' has shape {(<object>a).shape}; expected "
                         f"{shape} {why}")


cdef inline cnp.ndarray check_like(object obj, str fn, str name, cnp.ndarray ref, str refname,
                                   bint writable):
    """An array with the dtype and shape of ``ref`` (any number of dimensions), C-contiguous,
    aligned, writeable if asked."""
    cdef cnp.ndarray a = check_float_dtype(obj, fn, name)
    check_same_dtype(a, ref, fn, name, refname)
    if (<object>a).shape != (<object>ref).shape:      # the reason is formatted only when needed
        check_shape(a, (<object>ref).shape, fn, name, f"(the shape of '{refname}')")
    check_layout(a, fn, name, writable)
    return a


cdef inline check_no_overlap(cnp.ndarray out, cnp.ndarray other, str fn, str outname,
                             str othername, bint same_ok):
    """An output must not overlap an input, except (when ``same_ok``) by being exactly the same
    memory with the same shape, which element-wise kernels handle in place. Both arrays are
    C-contiguous here, so their memory is exactly the byte range [data, data + nbytes)."""
    cdef char* o = <char*>cnp.PyArray_DATA(out)
    cdef char* p = <char*>cnp.PyArray_DATA(other)
    cdef Py_ssize_t on = cnp.PyArray_NBYTES(out)
    cdef Py_ssize_t pn = cnp.PyArray_NBYTES(other)
    if on == 0 or pn == 0 or o + on <= p or p + pn <= o:
        return
    if same_ok and o == p and (<object>out).shape == (<object>other).shape:
        return
    raise ValueError(
        f"{fn}: output '{outname}' overlaps input '{othername}'"
        + ("; it may be the very same array, but not a partial overlap" if same_ok
           else "; pass a separate array"))


cdef inline int check_blas_dim(Py_ssize_t n, str fn, str what) except -1:
    if n > INT_MAX:
        raise ValueError(f"{fn}: {what} = {n} exceeds the BLAS limit of {INT_MAX}")
    return <int>n


cdef inline double check_real(object value, str fn, str name) except? -1.0:
    """A real number (inf and NaN included: the caller checks the range). Numbers only: a
    string that happens to parse, or a bool, is still a wrong call."""
    if type(value) is float:        # the common case, first
        return <double>value
    import numpy
    if isinstance(value, (str, bytes, bool, numpy.bool_)):
        raise TypeError(f"{fn}: argument '{name}' must be a real number, got "
                        f"{shown(value)}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{fn}: argument '{name}' must be a real number, got "
                        f"{shown(value)}") from None


cdef inline double check_finite_float(object value, str fn, str name) except? -1.0:
    cdef double v = check_real(value, fn, name)
    if v != v or v == float("inf") or v == -float("inf"):
        raise ValueError(f"{fn}: argument '{name}' must be finite, got {v}")
    return v


cdef inline bint check_flag(object value, str fn, str name) except -1:
    """A boolean argument: True/False (also numpy.bool_ and the ints 0/1), nothing else."""
    if value is True or value is False:
        return value
    import numpy
    if isinstance(value, numpy.bool_) or (isinstance(value, int) and value in (0, 1)):
        return bool(value)
    raise TypeError(f"{fn}: argument '{name}' must be True or False, got "
                    f"{shown(value)}")
