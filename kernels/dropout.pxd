# Inverted dropout with a counter-based generator: the keep decision of element i is a pure
# function of (seed, counter + i), so a (seed, counter) pair fully determines a mask and a
# resumed run reproduces it bit for bit.
from libc.stdint cimport uint64_t


cdef inline uint64_t splitmix64(uint64_t z) noexcept nogil:
    """The splitmix64 finaliser (Steele, Lea, Flood 2014): a bijective 64-bit mix whose
    outputs on consecutive inputs pass BigCrush."""
    z = (z ^ (z >> 30)) * <uint64_t>0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * <uint64_t>0x94D049BB133111EB
    return z ^ (z >> 31)


cdef inline uint64_t dropout_key(uint64_t seed) noexcept nogil:
    """Per-seed key: mixing the seed first keeps nearby seeds from giving shifted streams."""
    return splitmix64(seed ^ <uint64_t>0x6A09E667F3BCC909)


cdef inline bint dropout_keep(uint64_t key, uint64_t index, uint64_t threshold) noexcept nogil:
    """u = top 32 bits of splitmix64(key + index * golden) / 2^32; keep iff u >= rate, i.e. iff
    the top 32 bits >= threshold = ceil(rate * 2^32)."""
    return (splitmix64(key + index * <uint64_t>0x9E3779B97F4A7C15) >> 32) >= threshold
