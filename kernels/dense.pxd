# Fully connected layer: GEMM through blas.pxd, then bias + activation fused in one pass.
# The cores are inline in blas.pxd / activations.pxd; this module exports only Python wrappers.
