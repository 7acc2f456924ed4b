# Fully connected layer: GEMM through blas.pxd, then bias + activation fused in one pass.
# The cores are inline in blas.pxd / activations.pxd; this module exports only Python wrappers.

# Inputs with zero columns (see dense.pyx): shared with chain.pyx, inline so that no run-time
# import between the extension modules is needed.
from cython cimport floating


cdef inline Py_ssize_t nonzero_columns(const floating* x, Py_ssize_t n, Py_ssize_t d,
                                       floating* acc, long long* cols) noexcept nogil:
    """cols[:k] := the columns of x (n, d) holding a non-zero (or NaN) entry, ascending;
    returns k. acc: (d,) scratch."""
    cdef Py_ssize_t i, j, k = 0
    cdef const floating* row
    for j in range(d):
        acc[j] = 0
    for i in range(n):
        row = x + i * d
        for j in range(d):
            # |x| summed: 0 only when every entry is 0 (inf and NaN stay non-zero)
            acc[j] = acc[j] + (row[j] if row[j] >= 0 else -row[j])
    for j in range(d):
        if acc[j] != 0:
            cols[k] = j
            k += 1
    return k


cdef inline void gather_columns(const floating* x, Py_ssize_t n, Py_ssize_t d_in,
                                Py_ssize_t d_out, const floating* w, const long long* cols,
                                Py_ssize_t k, floating* xc, floating* wc) noexcept nogil:
    """xc (n, k) := the columns cols[:k] of x (n, d_in); wc (k, d_out) := those rows of w."""
    cdef Py_ssize_t i, r, j
    cdef const floating* row
    cdef floating* crow
    cdef const floating* wrow
    for i in range(n):
        row = x + i * d_in
        crow = xc + i * k
        for r in range(k):
            crow[r] = row[cols[r]]
    for r in range(k):
        wrow = w + cols[r] * d_out
        crow = wc + r * d_out
        for j in range(d_out):
            crow[j] = wrow[j]
