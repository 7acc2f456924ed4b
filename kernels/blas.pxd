# Row-major GEMM and GEMV over scipy's BLAS (scipy.linalg.cython_blas), as ``cdef inline`` cores
# so that other kernels (dense, ...) cimport them without a run-time dependency on this module.
#
# BLAS is column-major; a row-major (r, c) array is the column-major (c, r) array of its
# transpose. Row-major C = op(A) op(B) is therefore column-major C^T = op(B)^T op(A)^T: call
# BLAS with the operands swapped and the same transpose flags.
from cython cimport floating
from scipy.linalg.cython_blas cimport sgemm, dgemm, sgemv, dgemv


cdef inline void gemm_rm(bint trans_a, bint trans_b, int m, int n, int k, floating alpha,
                         const floating* a, const floating* b, floating beta,
                         floating* c) noexcept nogil:
    """C := alpha op(A) op(B) + beta C, all row-major and contiguous: op(A) (m, k), op(B) (k, n),
    C (m, n); A is stored (k, m) when trans_a, B is stored (n, k) when trans_b."""
    cdef char ta = b'T' if trans_b else b'N'     # applies to B, the first BLAS operand
    cdef char tb = b'T' if trans_a else b'N'     # applies to A, the second BLAS operand
    # leading dimension of a contiguous row-major array = its number of columns (>= 1 for BLAS)
    cdef int ldb = k if trans_b else n
    cdef int lda = m if trans_a else k
    cdef int ldc = n
    if ldb < 1:
        ldb = 1
    if lda < 1:
        lda = 1
    if ldc < 1:
        ldc = 1
    if m == 0 or n == 0:
        return
    if floating is float:
        sgemm(&ta, &tb, &n, &m, &k, &alpha, <float*>b, &ldb, <float*>a, &lda, &beta, c, &ldc)
    else:
        dgemm(&ta, &tb, &n, &m, &k, &alpha, <double*>b, &ldb, <double*>a, &lda, &beta, c, &ldc)


cdef inline void gemv_rm(bint trans, int m, int n, floating alpha, const floating* a,
                         const floating* x, floating beta, floating* y) noexcept nogil:
    """y := alpha op(A) x + beta y for a row-major contiguous A (m, n): op(A) = A gives y (m,)
    from x (n,); op(A) = A^T gives y (n,) from x (m,)."""
    # the row-major (m, n) A is the column-major (n, m) A^T: flip the transpose flag
    cdef char t = b'N' if trans else b'T'
    cdef int lda = n if n > 1 else 1
    cdef int one = 1
    cdef int ylen = n if trans else m
    if ylen == 0:
        return
    if floating is float:
        sgemv(&t, &n, &m, &alpha, <float*>a, &lda, <float*>x, &one, &beta, y, &one)
    else:
        dgemv(&t, &n, &m, &alpha, <double*>a, &lda, <double*>x, &one, &beta, y, &one)
