# Inverted dropout with a counter-based generator: the keep decision of element i is a pure
# function of (seed, counter + i), so a (seed, counter) pair fully determines a mask and a
# resumed run reproduces it bit for bit. The generator and the loops are C (multi-versioned
# with DL_CLONES from _common.pxd: 64-bit multiplies vectorise on AVX-512 and AVX2).
from libc.stdint cimport uint64_t, uint8_t
from _common cimport check_finite_float     # orders _common's C (dl_expf, DL_CLONES) first


cdef extern from *:
    """
    /* The splitmix64 finaliser (Steele, Lea, Flood 2014): a bijective 64-bit mix whose outputs
       on consecutive inputs pass BigCrush. */
    static inline uint64_t dl_splitmix64(uint64_t z) {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
    }

    /* Per-seed key: mixing the seed first keeps nearby seeds from giving shifted streams. */
    static inline uint64_t dl_dropout_key(uint64_t seed) {
        return dl_splitmix64(seed ^ 0x6A09E667F3BCC909ULL);
    }

    /* keep element `index` iff u >= rate, u = top 32 bits of splitmix64(key + index * golden)
       / 2^32, i.e. iff those bits >= threshold = ceil(rate * 2^32) */
    static inline int dl_dropout_keep(uint64_t key, uint64_t index, uint64_t threshold) {
        return (dl_splitmix64(key + index * 0x9E3779B97F4A7C15ULL) >> 32) >= threshold;
    }

    /* y := x * mask * scale, mask[i] := keep(counter + i); y may be x. Loads happen before the
       select so that the loop if-converts and vectorises. */
    #define DL_DROPOUT_LOOPS(T, SUFFIX)                                                   \\
    DL_CLONES static void dl_dropout_forward_##SUFFIX(                                    \\
            const T* x, Py_ssize_t m, uint64_t key, uint64_t counter, uint64_t threshold, \\
            T scale, T* y, uint8_t* mask) {                                               \\
        for (Py_ssize_t i = 0; i < m; i++) {                                              \\
            int keep = dl_dropout_keep(key, counter + (uint64_t)i, threshold);            \\
            T v = x[i] * scale;                                                           \\
            mask[i] = (uint8_t)keep;                                                      \\
            y[i] = keep ? v : (T)0;                                                       \\
        }                                                                                 \\
    }                                                                                     \\
    DL_CLONES static void dl_dropout_backward_##SUFFIX(                                   \\
            const T* dy, const uint8_t* mask, Py_ssize_t m, T scale, T* dx) {             \\
        for (Py_ssize_t i = 0; i < m; i++) {                                              \\
            T v = dy[i] * scale;                                                          \\
            dx[i] = mask[i] ? v : (T)0;                                                   \\
        }                                                                                 \\
    }
    DL_DROPOUT_LOOPS(float, f32)
    DL_DROPOUT_LOOPS(double, f64)
    """
    uint64_t splitmix64 "dl_splitmix64"(uint64_t z) nogil
    uint64_t dropout_key "dl_dropout_key"(uint64_t seed) nogil
    bint dropout_keep "dl_dropout_keep"(uint64_t key, uint64_t index, uint64_t threshold) nogil
    void dropout_forward_f32 "dl_dropout_forward_f32"(
        const float* x, Py_ssize_t m, uint64_t key, uint64_t counter, uint64_t threshold,
        float scale, float* y, uint8_t* mask) nogil
    void dropout_forward_f64 "dl_dropout_forward_f64"(
        const double* x, Py_ssize_t m, uint64_t key, uint64_t counter, uint64_t threshold,
        double scale, double* y, uint8_t* mask) nogil
    void dropout_backward_f32 "dl_dropout_backward_f32"(
        const float* dy, const uint8_t* mask, Py_ssize_t m, float scale, float* dx) nogil
    void dropout_backward_f64 "dl_dropout_backward_f64"(
        const double* dy, const uint8_t* mask, Py_ssize_t m, double scale, double* dx) nogil
