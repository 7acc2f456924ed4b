# Python-level argument checks shared by the loss and optimizer kernels (losses.pyx, optim.pyx),
# with the wording their error messages (and the tests matching them) use:
# "{fn}: {name}: expected ...". Run once per call, with the GIL.
#
# Everything here is ``cdef inline``, so a module that cimports this file needs no other
# extension at run time (see _common.pxd).
cimport numpy as cnp


cdef inline str float_typename(int typenum):
    return "float32" if typenum == cnp.NPY_FLOAT else "float64"


cdef inline int float_typenum(str fn, str name, object a) except -1:
    """The type number (NPY_FLOAT / NPY_DOUBLE) of the array that fixes the call's dtype."""
    if not isinstance(a, cnp.ndarray):
        raise TypeError(f"{fn}: {name}: expected a numpy.ndarray of float32 or float64, "
                        f"got {type(a).__name__}")
    cdef int tn = cnp.PyArray_TYPE(<cnp.ndarray>a)
    if tn != cnp.NPY_FLOAT and tn != cnp.NPY_DOUBLE:
        raise TypeError(f"{fn}: {name}: expected dtype float32 or float64, "
                        f"got {(<cnp.ndarray>a).dtype}")
    if not cnp.PyArray_ISNOTSWAPPED(<cnp.ndarray>a):
        raise TypeError(f"{fn}: {name}: expected dtype float32 or float64 in native byte order, "
                        f"got {(<cnp.ndarray>a).dtype.str}")
    return tn


cdef inline int check_layout(str fn, str name, cnp.ndarray arr, str readonly) except -1:
    """C-contiguous and aligned; writeable too unless ``readonly`` is None (an input), in which
    case ``readonly`` is the message's tail when it is not ("{fn}: {name}: {readonly}")."""
    if not cnp.PyArray_IS_C_CONTIGUOUS(arr):
        raise ValueError(f"{fn}: {name}: array must be C-contiguous (got strides "
                         f"{(<object>arr).strides} for shape {(<object>arr).shape}); "
                         f"pass np.ascontiguousarray({name})")
    if not cnp.PyArray_ISALIGNED(arr):
        raise ValueError(f"{fn}: {name}: array data is not aligned for its dtype; "
                         f"pass a copy (np.array({name}))")
    if readonly is not None and not cnp.PyArray_ISWRITEABLE(arr):
        raise ValueError(f"{fn}: {name}: {readonly}")
    return 0


cdef inline cnp.ndarray check_array(str fn, str name, object a, int typenum, str dtype_of,
                                    tuple shape, str shape_of, str readonly):
    """Check an array argument once: type, dtype (``typenum``, that of ``dtype_of``), shape
    (unless None; that of ``shape_of``), then check_layout."""
    if not isinstance(a, cnp.ndarray):
        raise TypeError(f"{fn}: {name}: expected a numpy.ndarray of {float_typename(typenum)}, "
                        f"got {type(a).__name__}")
    cdef cnp.ndarray arr = <cnp.ndarray>a
    if cnp.PyArray_TYPE(arr) != typenum or not cnp.PyArray_ISNOTSWAPPED(arr):
        raise TypeError(f"{fn}: {name}: expected dtype {float_typename(typenum)} (the dtype of "
                        f"{dtype_of}), got {arr.dtype}")
    if shape is not None and (<object>arr).shape != shape:
        raise ValueError(f"{fn}: {name}: expected shape {shape} (the shape of {shape_of}), "
                         f"got {(<object>arr).shape}")
    check_layout(fn, name, arr, readonly)
    return arr


cdef inline bint arrays_overlap(cnp.ndarray a, cnp.ndarray b):
    # both are C-contiguous: they overlap iff their byte ranges intersect
    cdef char* a0 = <char*>cnp.PyArray_DATA(a)
    cdef char* b0 = <char*>cnp.PyArray_DATA(b)
    cdef Py_ssize_t na = cnp.PyArray_SIZE(a) * cnp.PyArray_ITEMSIZE(a)
    cdef Py_ssize_t nb = cnp.PyArray_SIZE(b) * cnp.PyArray_ITEMSIZE(b)
    if na == 0 or nb == 0:
        return False
    return a0 < b0 + nb and b0 < a0 + na
