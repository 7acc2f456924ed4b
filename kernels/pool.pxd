# 2-D pooling, NCHW. The geometry (ConvGeom, parse_pair, parse_padding, out_size) is conv.pxd's;
# this module exports only Python wrappers (pool.pyx).
